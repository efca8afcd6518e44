;; A well-behaved Liquid ABI function: copies its input to its output.
;; The input goes at offset 1024; memory grows to fit it.
(module
  (import "liquid" "input_len" (func $input_len (result i32)))
  (import "liquid" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "liquid" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "liquid_call") (result i32)
    (local $len i32)
    (local $need i32)
    (local $got i32)
    (local.set $len (call $input_len))
    ;; pages needed for [0, 1024 + len)
    (local.set $need
      (i32.shr_u (i32.add (i32.add (local.get $len) (i32.const 1024)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
          (then (return (i32.const 1))))))
    (local.set $got (call $input_read (i32.const 1024) (local.get $len)))
    (if (i32.lt_s (call $output (i32.const 1024) (local.get $got)) (i32.const 0))
      (then (return (i32.const 1))))
    (i32.const 0)))
