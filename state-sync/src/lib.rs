//! Objects: replicated automerge documents. Filled in by the objects issue; empty until then.
