;; Imports `env.system`, which is neither the Liquid ABI nor WASI: refused at deploy, with
;; the import's name.
(module
  (import "env" "system" (func $system (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "rm -rf /\00")
  (func (export "liquid_call") (result i32)
    (call $system (i32.const 0))))
