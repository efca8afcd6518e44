;; Hostile: unbounded recursion with a few locals per frame. Only the stack limit (a trap)
;; ends it — or fuel, if the stack is very large.
(module
  (memory (export "memory") 1)
  (func $down (param $n i64) (result i64)
    (local $a i64) (local $b i64) (local $c i64) (local $d i64)
    (local.set $a (i64.add (local.get $n) (i64.const 1)))
    (local.set $b (i64.mul (local.get $a) (i64.const 3)))
    (local.set $c (i64.xor (local.get $b) (local.get $n)))
    (local.set $d (call $down (local.get $c)))
    (i64.add (local.get $d) (local.get $a)))
  (func (export "liquid_call") (result i32)
    (drop (call $down (i64.const 0)))
    (i32.const 0)))
