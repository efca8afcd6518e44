;; A valid module with a memory but neither `_start` nor `liquid_call`: refused at deploy.
(module
  (memory (export "memory") 1)
  (func $helper (export "helper") (result i32)
    (i32.const 42)))
