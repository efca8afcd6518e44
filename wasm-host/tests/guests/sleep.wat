;; Hostile: a WASI command that sleeps 120 s in poll_oneoff (what std::thread::sleep does).
;; wasmtime's own poll_oneoff blocked the thread for the whole time, past limits.wall_ms,
;; because a host call cannot be interrupted; Liquid's returns at once (time does not pass
;; inside a call). Prints "slept" if the event came back right.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 256) "slept")
  (func (export "_start")
    ;; subscription at 0: userdata 42, tag 0 (clock), clock id 1 (monotonic), timeout 120 s
    (i64.store (i32.const 0) (i64.const 42))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 120000000000))
    (if (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)) (then unreachable))
    (if (i64.ne (i64.load (i32.const 64)) (i64.const 42)) (then unreachable))
    (if (i32.ne (i32.load (i32.const 128)) (i32.const 1)) (then unreachable))
    ;; no subscriptions: EINVAL (28), not a hang
    (if (i32.ne (call $poll (i32.const 0) (i32.const 64) (i32.const 0) (i32.const 128)) (i32.const 28))
      (then unreachable))
    (i32.store (i32.const 200) (i32.const 256))
    (i32.store (i32.const 204) (i32.const 5))
    (drop (call $write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 300)))))
