// SPDX-License-Identifier: MIT
/*
 * xdp_pass: passes every frame. it_router.sh attaches it to the switch side of the router's
 * veth: a veth delivers frames that its peer sends with XDP_TX only while it runs NAPI,
 * which a native XDP program turns on (as `ethtool -K gro on` would).
 */
#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
