#!/usr/bin/env python3
"""Groups a `perf report --sort symbol --stdio` listing of the router's shard thread by part of
the packet path (scripts/bench.sh runs it under BENCH_PERF=1; docs/performance.md reads it).

    scripts/perf-summary.py NAME.perf.txt...

A symbol goes to the first group whose pattern matches it (kernel groups take only `[k]`
symbols, user groups only `[.]` ones); what matches none is "other".
"""
import collections
import re
import sys

GROUPS = [
    ("SRTP crypto (AES-GCM, HMAC)", None, r"aws_lc|gcm_|aes_|sha1|hmac"),
    ("router: engine and shell", ".", r"router_engine::|router::|schema::|shm_queue::"),
    ("io_uring submission and completion", "k", r"^io_|io_uring|__io_"),
    ("kernel: loopback delivery to the receivers' sockets (softirq, socket filter, free)", "k",
     r"net_rx_action|process_backlog|netif_receive|__netif_rx|udp_queue_rcv|udp_rcv|__udp4_lib|udp_unicast|"
     r"sk_filter|bpf_|ip_rcv|ip_local_deliver|ip_protocol_deliver|sock_def_readable|skb_defer|kfree_skb|"
     r"skb_release|__udp_enqueue|udp_rmem|run_filter|skb_free|__kfree|^kfree|consume_skb|napi_|do_softirq|__softirqentry|"
     r"raw_local_deliver|enqueue_to_backlog|netif_rx|local_bh_enable|handle_softirqs"),
    ("kernel: UDP/IP send (route, skb build, copy in, loopback xmit)", "k",
     r"udp_send|udp_sendmsg|udp4_|ip_|__ip_|loopback_xmit|dev_queue_xmit|dev_hard_start|skb|alloc|copy_from_iter|"
     r"copyin|_copy_from_user|sock_wfree|fib_|ipv4_mtu|xmit|sendmsg|sendmmsg|neigh|dst_|csum|check_object_size|"
     r"check_heap|kmem_cache|sock_alloc_send|kmalloc|memcg|slab|validate_xmit|__sys_sendmsg|sk_dst|inet_|rt_|"
     r"copy_msghdr_from_user|move_addr_to_kernel|copy_iovec_from_user|security_sk_classify_flow|siphash|xfrm_|"
     r"__import_iovec|check_stack_object|copy_from_kernel_nofault"),
    ("kernel: receive syscalls", "k", r"recvmsg|recvmmsg|udp_recvmsg|skb_recv|copy_to_iter|__skb_datagram|_copy_to_user"),
    ("kernel: locks, RCU, syscall entry, scheduler", "k",
     r"spin|rcu|entry_|syscall|schedule|__x64_sys|futex|finish_task|irq|preempt|clear_bhb|native_|restore_regs|"
     r"do_syscall|exit_to_user|fpregs|switch_"),
    ("memcpy, allocator (user)", ".", r"memcpy|memmove|memset|^mi_|_mi_|malloc|^free|cfree"),
    ("std and other libraries (user)", ".", r"^std::|^core::|^alloc::|^hashbrown::|^<|^tracing|^libc|^crossbeam"),
]


def summarize(path):
    shares = collections.Counter()
    total = 0.0
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"\s+([\d.]+)%\s+\[(.)\]\s+(.+?)\s*(-\s+-\s*)?$", line)
        if not m:
            continue
        pct, space, sym = float(m.group(1)), m.group(2), m.group(3)
        total += pct
        for name, only_in, pattern in GROUPS:
            if only_in in (None, space) and re.search(pattern, sym):
                shares[name] += pct
                break
        else:
            shares[f"other ({'kernel' if space == 'k' else 'user'})"] += pct
    print(f"{path}: {total:.0f} % of the shard thread's samples")
    for name, pct in shares.most_common():
        print(f"  {pct:5.1f} %  {name}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        summarize(p)
