#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Sourced first by the tests that mount (bpffs, pins) and must leave no mount behind: runs
# the sourcing script again in a private mount namespace of its own, with its arguments,
# or says SKIPPED when it cannot (not root, no unshare).
if [ -z "${R2P2_IT_PRIVATE_MNT:-}" ]; then
	[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root (BPF, namespaces)"; exit 77; }
	command -v unshare >/dev/null || { echo "SKIPPED: unshare (util-linux) is not installed"; exit 77; }
	R2P2_IT_PRIVATE_MNT=1 exec unshare --mount --propagation private bash "$0" "$@"
fi
