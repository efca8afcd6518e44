;; A Liquid ABI function using objects: increments `n` of object `demo/wat` by 1, reads it
;; back with obj_get and outputs the JSON value (e.g. `3`). On an error it outputs the host's
;; message and returns 1. Needs `objects.write = ["demo"]`.
(module
  (import "liquid" "obj_inc" (func $obj_inc (param i32 i32 i32 i32 i64) (result i64)))
  (import "liquid" "obj_get" (func $obj_get (param i32 i32 i32 i32) (result i64)))
  (import "liquid" "result_read" (func $result_read (param i32 i32) (result i32)))
  (import "liquid" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "demo/wat")
  (data (i32.const 32) "n")
  ;; copies the current result (at most 60 KiB) to offset 1024 and outputs it
  (func $emit_result (param $len i32)
    (if (i32.gt_u (local.get $len) (i32.const 61440))
      (then (local.set $len (i32.const 61440))))
    (drop (call $output (i32.const 1024)
                        (call $result_read (i32.const 1024) (local.get $len)))))
  (func (export "liquid_call") (result i32)
    (local $r i64)
    (local.set $r (call $obj_inc (i32.const 16) (i32.const 8) (i32.const 32) (i32.const 1)
                                 (i64.const 1)))
    (if (i64.lt_s (local.get $r) (i64.const 0))
      (then (call $emit_result (i32.const 61440)) (return (i32.const 1))))
    (local.set $r (call $obj_get (i32.const 16) (i32.const 8) (i32.const 32) (i32.const 1)))
    (if (i64.lt_s (local.get $r) (i64.const 0))
      (then (call $emit_result (i32.const 61440)) (return (i32.const 1))))
    (call $emit_result (i32.wrap_i64 (local.get $r)))
    (i32.const 0)))
