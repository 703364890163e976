// SPDX-License-Identifier: MIT
/*
 * The XDP program's life on one interface: load through the skeleton, fill the maps,
 * pin, attach, and undo all of it. See xdp.h for the contract.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/if_link.h>
#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "err.h"
#include "r2p2.skel.h"
#include "xdp.h"

#define BPFFS_DIR "/sys/fs/bpf"

/* Everything xdp_open pins, in the order it is removed. */
static const char *const pin_names[] = {
    R2P2_XDP_PROG_NAME, "r2p2_ports", "r2p2_qconf", "r2p2_xsks", "r2p2_stats",
};
#define NUM_PINS (sizeof(pin_names) / sizeof(pin_names[0]))

struct xdp_prog {
	struct r2p2_bpf *skel;
	char ifname[IF_NAMESIZE];
	char pin_dir[sizeof(XDP_PIN_ROOT) + IF_NAMESIZE + 1];
	int ifindex;
	__u32 mode_flags; /* XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE */
	bool attached;
	bool pinned;
	int lock_fd; /* flock on the pin directory: one live owner per interface */
};

static const char *mode_name(__u32 flags)
{
	return flags & XDP_FLAGS_SKB_MODE ? "skb" : flags & XDP_FLAGS_HW_MODE ? "hw" : "native";
}

static int pin_path(const struct xdp_prog *p, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", p->pin_dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ensure_bpffs mounts a bpf filesystem on /sys/fs/bpf unless one is there already. */
static int ensure_bpffs(void)
{
	struct statfs sfs;

	if (statfs(BPFFS_DIR, &sfs) == 0 && sfs.f_type == BPF_FS_MAGIC)
		return 0;
	if (mount("bpf", BPFFS_DIR, "bpf", 0, "mode=0700") < 0)
		return -errno;
	return 0;
}

static int mkdir_p(const char *dir)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* unpin_all removes our pins from the pin directory (stale or ours); missing ones are fine. */
static void unpin_all(const struct xdp_prog *p)
{
	char path[sizeof(p->pin_dir) + 32];
	size_t i;

	for (i = 0; i < NUM_PINS; i++)
		if (pin_path(p, pin_names[i], path, sizeof(path)) == 0)
			unlink(path);
}

static int pin_all(struct xdp_prog *p)
{
	struct bpf_map *maps[] = {
	    p->skel->maps.r2p2_ports,
	    p->skel->maps.r2p2_qconf,
	    p->skel->maps.r2p2_xsks,
	    p->skel->maps.r2p2_stats,
	};
	char path[sizeof(p->pin_dir) + 32];
	size_t i;
	int rc;

	rc = pin_path(p, R2P2_XDP_PROG_NAME, path, sizeof(path));
	if (rc == 0)
		rc = bpf_program__pin(p->skel->progs.r2p2_xdp, path);
	for (i = 0; rc == 0 && i < sizeof(maps) / sizeof(maps[0]); i++) {
		rc = pin_path(p, bpf_map__name(maps[i]), path, sizeof(path));
		if (rc == 0)
			rc = bpf_map__pin(maps[i], path);
	}
	if (rc)
		unpin_all(p);
	return rc;
}

/*
 * prog_name_by_id copies the name of program `id` to `name`; returns an fd of it (the
 * caller closes it) or a negative errno.
 */
static int prog_name_by_id(__u32 id, char *name, size_t len)
{
	struct bpf_prog_info info;
	__u32 info_len = sizeof(info);
	int fd, rc;

	fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0)
		return -errno;
	memset(&info, 0, sizeof(info));
	rc = bpf_obj_get_info_by_fd(fd, &info, &info_len);
	if (rc) {
		rc = -errno;
		close(fd);
		return rc;
	}
	snprintf(name, len, "%s", info.name);
	return fd;
}

/* attach_hint says what an attach failure `rc` in mode `mode_flags` likely means. */
static const char *attach_hint(int rc, __u32 mode_flags)
{
	if (rc == -EOPNOTSUPP && mode_flags == XDP_FLAGS_DRV_MODE)
		return " (the driver has no native XDP; use skb mode)";
	if (rc == -EBUSY || rc == -EEXIST)
		return " (another XDP program was attached meanwhile)";
	return "";
}

/*
 * attach puts our program on the interface. A leftover r2p2_xdp (a run that crashed
 * without detaching) is replaced atomically when it sits in the same mode and detached
 * first otherwise; somebody else's program is left alone.
 */
static int attach(struct xdp_prog *p, char *err, size_t err_len)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	LIBBPF_OPTS(bpf_xdp_attach_opts, aopts);
	struct {
		__u32 id;
		__u32 flags;
	} cur[3];
	int prog_fd = bpf_program__fd(p->skel->progs.r2p2_xdp);
	int old_fd = -1, rc, i;
	char name[BPF_OBJ_NAME_LEN];
	__u32 flags = p->mode_flags | XDP_FLAGS_UPDATE_IF_NOEXIST;

	rc = bpf_xdp_query(p->ifindex, 0, &q);
	if (rc) {
		set_err(err, err_len, "%s: cannot query its XDP programs: %s", p->ifname,
			strerror(-rc));
		return rc;
	}
	cur[0].id = q.drv_prog_id, cur[0].flags = XDP_FLAGS_DRV_MODE;
	cur[1].id = q.skb_prog_id, cur[1].flags = XDP_FLAGS_SKB_MODE;
	cur[2].id = q.hw_prog_id, cur[2].flags = XDP_FLAGS_HW_MODE;
	for (i = 0; i < 3; i++) {
		int fd;

		if (!cur[i].id)
			continue;
		fd = prog_name_by_id(cur[i].id, name, sizeof(name));
		if (fd < 0) {
			set_err(err, err_len, "%s: cannot inspect XDP program id %u (%s mode): %s",
				p->ifname, cur[i].id, mode_name(cur[i].flags), strerror(-fd));
			rc = fd;
			goto out;
		}
		if (strcmp(name, R2P2_XDP_PROG_NAME) != 0) {
			close(fd);
			set_err(
			    err, err_len,
			    "%s: XDP program '%s' (id %u) is attached in %s mode; not replacing "
			    "it (detach it with: ip link set dev %s xdp off)",
			    p->ifname, name, cur[i].id, mode_name(cur[i].flags), p->ifname);
			rc = -EBUSY;
			goto out;
		}
		if (cur[i].flags == p->mode_flags) {
			old_fd = fd; /* replaced below, atomically */
			continue;
		}
		/* A leftover in another mode: both modes cannot be active at once. */
		aopts.old_prog_fd = fd;
		rc = bpf_xdp_detach(p->ifindex, cur[i].flags | XDP_FLAGS_REPLACE, &aopts);
		close(fd);
		if (rc) {
			set_err(err, err_len,
				"%s: cannot detach leftover r2p2_xdp (id %u, %s mode): %s",
				p->ifname, cur[i].id, mode_name(cur[i].flags), strerror(-rc));
			goto out;
		}
	}
	if (old_fd >= 0) {
		aopts.old_prog_fd = old_fd;
		flags = p->mode_flags | XDP_FLAGS_REPLACE;
	} else {
		aopts.old_prog_fd = 0;
	}
	rc = bpf_xdp_attach(p->ifindex, prog_fd, flags, old_fd >= 0 ? &aopts : NULL);
	if (rc) {
		set_err(err, err_len, "%s: cannot attach r2p2_xdp in %s mode: %s%s", p->ifname,
			mode_name(p->mode_flags), strerror(-rc), attach_hint(rc, p->mode_flags));
		goto out;
	}
	p->attached = true;
out:
	if (old_fd >= 0)
		close(old_fd);
	return rc;
}

static int fill_maps(struct xdp_prog *p, const uint16_t *ports, size_t n, unsigned socks, char *err,
		     size_t err_len)
{
	size_t i;
	unsigned q;
	int rc;

	for (i = 0; i < n; i++) {
		struct r2p2_port_key key = {.port = ports[i]};
		struct r2p2_port_val val = {.service = (__u32)i};

		rc = bpf_map__update_elem(p->skel->maps.r2p2_ports, &key, sizeof(key), &val,
					  sizeof(val), BPF_ANY);
		if (rc) {
			set_err(err, err_len, "%s: cannot add port %u to r2p2_ports: %s", p->ifname,
				ports[i], strerror(-rc));
			return rc;
		}
	}
	for (q = 0; q < R2P2_MAX_QUEUES; q++) {
		rc = xdp_qconf_set(p, q, socks);
		if (rc) {
			set_err(err, err_len, "%s: cannot set r2p2_qconf[%u]: %s", p->ifname, q,
				strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* check_args refuses what xdp_open cannot work with (see xdp.h). */
static int check_args(const char *ifname, int mode, const uint16_t *ports, size_t n,
		      unsigned socks_per_queue, char *err, size_t err_len)
{
	if (!ifname || !*ifname || strlen(ifname) >= IF_NAMESIZE || strchr(ifname, '/') ||
	    !strcmp(ifname, ".") || !strcmp(ifname, "..")) {
		set_err(err, err_len, "'%s': not an interface name", ifname ? ifname : "");
		return -EINVAL;
	}
	if (mode != XDP_ATTACH_NATIVE && mode != XDP_ATTACH_SKB) {
		set_err(err, err_len, "%s: unknown XDP mode %d", ifname, mode);
		return -EINVAL;
	}
	if (n > R2P2_MAX_PORTS || (n && !ports) || socks_per_queue > R2P2_XSK_PER_QUEUE) {
		set_err(err, err_len, "%s: %zu ports (max %d), %u sockets per queue (max %d)",
			ifname, n, R2P2_MAX_PORTS, socks_per_queue, R2P2_XSK_PER_QUEUE);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!ports[i]) {
			set_err(err, err_len, "%s: port 0 cannot be served", ifname);
			return -EINVAL;
		}
	}
	return 0;
}

/* load opens and loads the program through its skeleton, then fills its maps. */
static int load(struct xdp_prog *p, const uint16_t *ports, size_t n, unsigned socks_per_queue,
		char *err, size_t err_len)
{
	int rc;

	p->skel = r2p2_bpf__open();
	if (!p->skel) {
		rc = -errno;
		set_err(err, err_len, "%s: cannot open the XDP program: %s", p->ifname,
			strerror(-rc));
		return rc;
	}
	rc = r2p2_bpf__load(p->skel);
	if (rc) {
		set_err(err, err_len,
			"%s: the kernel refused the XDP program: %s (needs root/CAP_BPF; "
			"libbpf printed the verifier log above)",
			p->ifname, strerror(-rc));
		return rc;
	}
	return fill_maps(p, ports, n, socks_per_queue, err, err_len);
}

/* pin takes the interface's pin directory (locked) and pins program and maps there. */
static int pin(struct xdp_prog *p, char *err, size_t err_len)
{
	int rc = ensure_bpffs();

	if (rc) {
		set_err(err, err_len, "%s: %s is not a bpf filesystem and mounting one failed: %s",
			p->ifname, BPFFS_DIR, strerror(-rc));
		return rc;
	}
	rc = mkdir_p(XDP_PIN_ROOT);
	if (!rc)
		rc = mkdir_p(p->pin_dir);
	if (rc) {
		set_err(err, err_len, "%s: cannot create %s: %s", p->ifname, p->pin_dir,
			strerror(-rc));
		return rc;
	}
	/* A live owner holds the lock; a crashed one released it with its last fd. */
	p->lock_fd = open(p->pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->lock_fd < 0 || flock(p->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = -errno;
		if (rc == -EWOULDBLOCK)
			rc = -EBUSY;
		set_err(err, err_len, "%s: %s is in use by another running process: %s", p->ifname,
			p->pin_dir, strerror(-rc));
		return rc;
	}
	unpin_all(p); /* stale pins of a crashed run */
	rc = pin_all(p);
	if (rc) {
		set_err(err, err_len, "%s: cannot pin under %s: %s", p->ifname, p->pin_dir,
			strerror(-rc));
		return rc;
	}
	p->pinned = true;
	return 0;
}

int xdp_open(const char *ifname, int mode, const uint16_t *ports, size_t n,
	     unsigned socks_per_queue, struct xdp_prog **out, char *err, size_t err_len)
{
	struct xdp_prog *p = NULL;
	int rc;

	*out = NULL;
	rc = check_args(ifname, mode, ports, n, socks_per_queue, err, err_len);
	if (rc)
		return rc;
	p = calloc(1, sizeof(*p));
	if (!p) {
		set_err(err, err_len, "%s: out of memory", ifname);
		return -ENOMEM;
	}
	p->lock_fd = -1;
	snprintf(p->ifname, sizeof(p->ifname), "%s", ifname);
	snprintf(p->pin_dir, sizeof(p->pin_dir), "%s/%s", XDP_PIN_ROOT, ifname);
	p->mode_flags = mode == XDP_ATTACH_SKB ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
	p->ifindex = (int)if_nametoindex(ifname);
	if (!p->ifindex) {
		rc = -errno;
		set_err(err, err_len, "%s: no such interface: %s", ifname, strerror(-rc));
		goto fail;
	}
	rc = load(p, ports, n, socks_per_queue, err, err_len);
	if (rc)
		goto fail;
	rc = pin(p, err, err_len);
	if (rc)
		goto fail;
	rc = attach(p, err, err_len);
	if (rc)
		goto fail;
	*out = p;
	return 0;
fail:
	if (rc == 0)
		rc = -EIO;
	xdp_close(p);
	return rc;
}

void xdp_close(struct xdp_prog *p)
{
	if (!p)
		return;
	if (p->attached) {
		LIBBPF_OPTS(bpf_xdp_attach_opts, opts,
			    .old_prog_fd = bpf_program__fd(p->skel->progs.r2p2_xdp));

		/* Only if ours is still the attached one (REPLACE compares). */
		bpf_xdp_detach(p->ifindex, p->mode_flags | XDP_FLAGS_REPLACE, &opts);
	}
	if (p->pinned) {
		unpin_all(p);
		rmdir(p->pin_dir);
		rmdir(XDP_PIN_ROOT); /* fails while other interfaces are pinned */
	}
	if (p->lock_fd >= 0)
		close(p->lock_fd);
	r2p2_bpf__destroy(p->skel);
	free(p);
}

/* has_port says whether `port` is one of the `n` ports of `ports`. */
static bool has_port(const uint16_t *ports, size_t n, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == port)
			return true;
	return false;
}

int xdp_ports_set(struct xdp_prog *p, const uint16_t *ports, size_t n, char *err, size_t err_len)
{
	struct bpf_map *map = p->skel->maps.r2p2_ports;
	struct r2p2_port_key key, next, gone[R2P2_MAX_PORTS];
	size_t num_gone = 0;
	int rc;

	if (n > R2P2_MAX_PORTS || (n && !ports)) {
		set_err(err, err_len, "%s: %zu ports (max %d)", p->ifname, n, R2P2_MAX_PORTS);
		return -EINVAL;
	}
	/* collect first: deleting while walking the hash could skip keys */
	for (rc = bpf_map__get_next_key(map, NULL, &next, sizeof(next));
	     rc == 0 && num_gone < R2P2_MAX_PORTS;
	     rc = bpf_map__get_next_key(map, &key, &next, sizeof(next))) {
		key = next;
		if (!has_port(ports, n, key.port))
			gone[num_gone++] = key;
	}
	for (size_t i = 0; i < num_gone; i++) {
		rc = bpf_map__delete_elem(map, &gone[i], sizeof(gone[i]), 0);
		if (rc && rc != -ENOENT) {
			set_err(err, err_len, "%s: cannot remove port %u from r2p2_ports: %s",
				p->ifname, gone[i].port, strerror(-rc));
			return rc;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct r2p2_port_key k = {.port = ports[i]};
		struct r2p2_port_val val = {.service = (__u32)i};

		rc = bpf_map__update_elem(map, &k, sizeof(k), &val, sizeof(val), BPF_ANY);
		if (rc) {
			set_err(err, err_len, "%s: cannot add port %u to r2p2_ports: %s", p->ifname,
				ports[i], strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int xdp_xsk_register(struct xdp_prog *p, unsigned queue, unsigned slot, int xsk_fd)
{
	__u32 key = queue * R2P2_XSK_PER_QUEUE + slot;
	__u32 fd = (__u32)xsk_fd;

	if (queue >= R2P2_MAX_QUEUES || slot >= R2P2_XSK_PER_QUEUE || xsk_fd < 0)
		return -EINVAL;
	return bpf_map__update_elem(p->skel->maps.r2p2_xsks, &key, sizeof(key), &fd, sizeof(fd),
				    BPF_ANY);
}

int xdp_xsk_unregister(struct xdp_prog *p, unsigned queue, unsigned slot)
{
	__u32 key = queue * R2P2_XSK_PER_QUEUE + slot;
	int rc;

	if (queue >= R2P2_MAX_QUEUES || slot >= R2P2_XSK_PER_QUEUE)
		return -EINVAL;
	rc = bpf_map__delete_elem(p->skel->maps.r2p2_xsks, &key, sizeof(key), 0);
	return rc == -ENOENT ? 0 : rc;
}

int xdp_qconf_set(struct xdp_prog *p, unsigned queue, unsigned num_socks)
{
	struct r2p2_qconf val = {.num_socks = num_socks};
	__u32 key = queue;

	if (queue >= R2P2_MAX_QUEUES || num_socks > R2P2_XSK_PER_QUEUE)
		return -EINVAL;
	return bpf_map__update_elem(p->skel->maps.r2p2_qconf, &key, sizeof(key), &val, sizeof(val),
				    BPF_ANY);
}

int xdp_stats_sum(struct xdp_prog *p, struct r2p2_stats *out)
{
	enum { NUM_FIELDS = sizeof(struct r2p2_stats) / sizeof(__u64) };
	__u64 sum[NUM_FIELDS] = {0};
	struct r2p2_stats *per_cpu;
	int ncpu = libbpf_num_possible_cpus();
	__u32 zero = 0;
	int rc, c, f;

	if (ncpu < 1)
		return ncpu < 0 ? ncpu : -EINVAL;
	/* sizeof(struct r2p2_stats) is a multiple of 8, the per-CPU value stride. */
	per_cpu = calloc((size_t)ncpu, sizeof(*per_cpu));
	if (!per_cpu)
		return -ENOMEM;
	rc = bpf_map__lookup_elem(p->skel->maps.r2p2_stats, &zero, sizeof(zero), per_cpu,
				  (size_t)ncpu * sizeof(*per_cpu), 0);
	if (rc == 0) {
		for (c = 0; c < ncpu; c++) {
			__u64 v[NUM_FIELDS];

			memcpy(v, &per_cpu[c], sizeof(v));
			for (f = 0; f < NUM_FIELDS; f++)
				sum[f] += v[f];
		}
		memcpy(out, sum, sizeof(*out));
	}
	free(per_cpu);
	return rc;
}

struct r2p2_bpf *xdp_skel(struct xdp_prog *p)
{
	return p->skel;
}

int xdp_ifindex(const struct xdp_prog *p)
{
	return p->ifindex;
}

const char *xdp_pin_dir(const struct xdp_prog *p)
{
	return p->pin_dir;
}
