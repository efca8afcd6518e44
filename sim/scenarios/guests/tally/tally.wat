;; tally: an in-memory aggregator actor for the placement scenarios. Each call adds its input's
;; length to a running total kept in the instance's memory (an actor's state: no objects are
;; touched) and outputs the number of calls so far and the total, as two little-endian i64.
(module
  (import "liquid" "input_len" (func $input_len (result i32)))
  (import "liquid" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "liquid_call") (result i32)
    ;; calls at [0, 8), total at [8, 16)
    (i64.store (i32.const 0) (i64.add (i64.load (i32.const 0)) (i64.const 1)))
    (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.extend_i32_u (call $input_len))))
    (if (i32.lt_s (call $output (i32.const 0) (i32.const 16)) (i32.const 0))
      (then (return (i32.const 1))))
    (i32.const 0)))
