;; Hostile: grows memory one 64 KiB page at a time and writes to every new page, so the
;; memory is really committed, until growing fails (at the memory cap, e.g. 64 MiB). It then
;; asks for 1 GiB at once, and then keeps touching every page forever: only the memory limit
;; (a trap or a failed grow) plus fuel or the wall-clock limit can end it.
;; Memory has no declared maximum.
(module
  (memory (export "memory") 1)
  (func (export "liquid_call") (result i32)
    (local $pages i32)
    (local $addr i32)
    ;; grow until refused
    (block $refused
      (loop $grow
        (local.set $pages (memory.grow (i32.const 1)))
        (br_if $refused (i32.eq (local.get $pages) (i32.const -1)))
        ;; touch the new page (its first and last byte)
        (i32.store8 (i32.mul (local.get $pages) (i32.const 65536)) (i32.const 1))
        (i32.store8
          (i32.sub (i32.mul (i32.add (local.get $pages) (i32.const 1)) (i32.const 65536))
                   (i32.const 1))
          (i32.const 1))
        (br $grow)))
    ;; one more big try: 16384 pages = 1 GiB
    (drop (memory.grow (i32.const 16384)))
    ;; then touch every page forever
    (loop $touch
      (local.set $addr (i32.const 0))
      (block $done
        (loop $page
          (br_if $done (i32.ge_u (local.get $addr)
                                 (i32.mul (memory.size) (i32.const 65536))))
          (i32.store8 (local.get $addr)
                      (i32.add (i32.load8_u (local.get $addr)) (i32.const 1)))
          (local.set $addr (i32.add (local.get $addr) (i32.const 4096)))
          (br $page)))
      (br $touch))
    (i32.const 0)))
