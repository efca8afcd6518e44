;; Traps at once (`unreachable`).
(module
  (memory (export "memory") 1)
  (func (export "liquid_call") (result i32)
    (unreachable)))
