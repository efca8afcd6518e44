;; Hostile: an infinite loop. Only fuel or the wall-clock limit ends it.
(module
  (memory (export "memory") 1)
  (func (export "liquid_call") (result i32)
    (loop $forever
      (br $forever))
    (i32.const 0)))
