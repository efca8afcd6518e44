;; An actor with N MiB of incompressible state, for the migration benchmark
;; (node-agent/benches/migration.rs). Manifest: kind = "actor", memory_mib >= N + 1, fuel
;; about 15 × N × 2^17 (filling 64 MiB takes ~100M instructions); wall_ms at most 5000 (a
;; longer wall_ms left calls held, never run, when this was written).
;;
;; The first call whose input is a decimal N (1..=1024) grows memory to 1 + 16·N pages (64 KiB
;; each) and fills the N MiB after page 0 with xorshift64 output, 8 bytes at a time, so a
;; checkpoint of it really is N MiB after compression. Later inputs are ignored. Every call
;; adds one to a counter and answers it in decimal: a migration that lost or replayed state
;; shows as a repeat or a step back.
;;
;; Page 0: offset 0 the counter (i64), 8 the ballast's size in MiB (i32, 0 = not filled yet),
;; 1024 the input (at most 32 bytes read), 2048..2080 the answer's digits.
(module
  (import "liquid" "input_len" (func $input_len (result i32)))
  (import "liquid" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "liquid" "output" (func $output (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  ;; The decimal number in the input, or 0 if it is empty, not a number or out of range.
  (func $parse_input (result i32)
    (local $len i32)
    (local $i i32)
    (local $c i32)
    (local $n i32)
    (local.set $len (call $input_read (i32.const 1024) (i32.const 32)))
    (block $bad
      (br_if $bad (i32.eqz (local.get $len)))
      (loop $digit
        (local.set $c (i32.sub (i32.load8_u (i32.add (i32.const 1024) (local.get $i))) (i32.const 48)))
        (br_if $bad (i32.gt_u (local.get $c) (i32.const 9)))
        (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10)) (local.get $c)))
        (br_if $bad (i32.gt_u (local.get $n) (i32.const 1024)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $digit (i32.lt_u (local.get $i) (local.get $len))))
      (return (local.get $n)))
    (i32.const 0))

  ;; Grows memory by 16·mib pages and fills them with xorshift64 words; 1 if growing failed.
  (func $fill (param $mib i32) (result i32)
    (local $addr i32)
    (local $end i32)
    (local $x i64)
    (if (i32.eq (memory.grow (i32.mul (local.get $mib) (i32.const 16))) (i32.const -1))
      (then (return (i32.const 1))))
    (local.set $addr (i32.const 65536))
    (local.set $end (i32.add (i32.const 65536) (i32.shl (local.get $mib) (i32.const 20))))
    (local.set $x (i64.const 0x9E3779B97F4A7C15))
    (loop $word
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
      (i64.store (local.get $addr) (local.get $x))
      (local.set $addr (i32.add (local.get $addr) (i32.const 8)))
      (br_if $word (i32.lt_u (local.get $addr) (local.get $end))))
    (i32.const 0))

  (func (export "liquid_call") (result i32)
    (local $mib i32)
    (local $n i64)
    (local $p i32)
    ;; Fill once, on the first call that names a size.
    (if (i32.and (i32.eqz (i32.load (i32.const 8))) (i32.gt_u (call $input_len) (i32.const 0)))
      (then
        (local.set $mib (call $parse_input))
        (if (i32.eqz (local.get $mib)) (then (return (i32.const 2))))
        (if (call $fill (local.get $mib)) (then (return (i32.const 3))))
        (i32.store (i32.const 8) (local.get $mib))))
    ;; Count the call and answer the count.
    (local.set $n (i64.add (i64.load (i32.const 0)) (i64.const 1)))
    (i64.store (i32.const 0) (local.get $n))
    (local.set $p (i32.const 2080))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
    (if (i32.lt_s (call $output (local.get $p) (i32.sub (i32.const 2080) (local.get $p))) (i32.const 0))
      (then (return (i32.const 1))))
    (i32.const 0)))
