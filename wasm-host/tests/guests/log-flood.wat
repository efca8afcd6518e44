;; Hostile: one call that logs a line a million times (issue 17: 794 MiB of agent log in 5 s).
(module
  (import "liquid" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "flood line")
  (func (export "liquid_call") (result i32)
    (local $i i32)
    (loop $again
      (call $log (i32.const 1) (i32.const 0) (i32.const 10))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 1000000))))
    (i32.const 0)))
