//! Functions: Wasm packages and the wasmtime runtime. Filled in by the functions issue; empty until then.
