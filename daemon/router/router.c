// SPDX-License-Identifier: MIT
/*
 * r2p2-router: loads bpf/router.bpf.c through its skeleton, attaches it to the configured
 * interface, pins its maps under /sys/fs/bpf/r2p2-router/<ifname>/ (mounting bpffs when
 * missing), and runs, in one thread, the slow path (slowpath.c), the next-hop resolution
 * and the ageing of requests (fleet.c). SIGHUP reloads the server lists without dropping
 * traffic; SIGTERM or SIGINT detaches and unpins. `--status` prints the pinned maps.
 * Once attached it gives up what only set-up needed (rt_sandbox.c): from then on it runs
 * as `user`, with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE at most, under a system call
 * filter.
 */
#include "router.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <systemd/sd-daemon.h>

#include <r2p2/r2p2.h> /* R2P2_VERSION */

#include "log.h"
#include "neigh.h"
#include "router.skel.h"

#define AGE_PERIOD_NS 100000000ull /* ageing, neighbours, servers back: every 100 ms */
#define FIFO_POLL_MS 5		   /* with requests waiting, a FEEDBACK lost still moves them */

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

/* ---- pins -------------------------------------------------------------------------- */

static void pin_dir(const struct router *r, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", RT_PIN_ROOT, r->cfg.interface);
}

static int ensure_bpffs(void)
{
	struct statfs sfs;

	if (statfs("/sys/fs/bpf", &sfs) == 0 && sfs.f_type == BPF_FS_MAGIC)
		return 0;
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") < 0)
		return -errno;
	return 0;
}

/*
 * unpin_all removes the pins and their directory. It runs at exit, after the privileges
 * were dropped: through the directories' descriptors opened at set-up, so that no path
 * above them (/sys/fs/bpf may be mode 0700) is looked up, and with no capability: an
 * unlink needs write access to the directory only, which its owner has, and
 * set_pin_owner gave both directories to the uid we run as (root, or `user`). RT_PIN_ROOT
 * itself goes too when the owner of /sys/fs/bpf runs us; for another user it stays,
 * empty, for the next start.
 */
static void unpin_all(struct router *r)
{
	struct bpf_map *m;

	if (r->pin_dir_fd < 0) { /* set-up failed before the pins */
		if (r->pin_root_fd >= 0)
			close(r->pin_root_fd);
		r->pin_root_fd = -1;
		return;
	}
	bpf_object__for_each_map(m, r->skel->obj)
	{
		if (strchr(bpf_map__name(m), '.'))
			continue; /* .rodata and friends are not ours to pin */
		if (unlinkat(r->pin_dir_fd, bpf_map__name(m), 0) < 0 && errno != ENOENT)
			log_warn("unpinning %s: %s", bpf_map__name(m), strerror(errno));
	}
	if (unlinkat(r->pin_dir_fd, R2P2_RT_PROG_NAME, 0) < 0 && errno != ENOENT)
		log_warn("unpinning %s: %s", R2P2_RT_PROG_NAME, strerror(errno));
	close(r->pin_dir_fd);
	r->pin_dir_fd = -1;
	if (unlinkat(r->pin_root_fd, r->cfg.interface, AT_REMOVEDIR) < 0)
		log_warn("removing %s/%s: %s", RT_PIN_ROOT, r->cfg.interface, strerror(errno));
	close(r->pin_root_fd);
	r->pin_root_fd = -1;
	rmdir(RT_PIN_ROOT); /* fails while other interfaces' routers run: theirs */
}

/* open_pin_dirs opens RT_PIN_ROOT and its <ifname> directory for unpin_all. */
static int open_pin_dirs(struct router *r)
{
	r->pin_root_fd = open(RT_PIN_ROOT, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->pin_root_fd >= 0)
		r->pin_dir_fd = openat(r->pin_root_fd, r->cfg.interface,
				       O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (r->pin_root_fd < 0 || r->pin_dir_fd < 0) {
		int e = errno;

		log_err("opening %s/%s: %s", RT_PIN_ROOT, r->cfg.interface, strerror(e));
		return -e;
	}
	return 0;
}

/*
 * set_pin_owner gives the pin directories to the uid the router runs as once set-up is
 * done (`user`, or root), so that it can unpin at exit: also when a run as another user
 * left RT_PIN_ROOT to that user.
 */
static int set_pin_owner(struct router *r, uid_t uid, gid_t gid)
{
	const int fds[] = {r->pin_root_fd, r->pin_dir_fd};
	char who[48];

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		struct stat st;

		if (fstat(fds[i], &st) == 0 && st.st_uid == uid && st.st_gid == gid)
			continue;
		if (fchown(fds[i], uid, gid) < 0) {
			int e = errno;

			if (r->cfg.user[0])
				snprintf(who, sizeof(who), "user %s", r->cfg.user);
			else
				snprintf(who, sizeof(who), "uid %u", (unsigned)uid);
			log_err("giving %s%s%s to %s: %s", RT_PIN_ROOT, i ? "/" : "",
				i ? r->cfg.interface : "", who, strerror(e));
			return -e;
		}
	}
	return 0;
}

static int pin_all(struct router *r)
{
	char dir[128], path[192];
	struct bpf_map *m;
	int rc = ensure_bpffs();

	if (rc < 0) {
		log_err("/sys/fs/bpf is not a bpf filesystem and mounting one failed: %s",
			strerror(-rc));
		return rc;
	}
	pin_dir(r, dir, sizeof(dir));
	if ((mkdir(RT_PIN_ROOT, 0700) < 0 && errno != EEXIST) ||
	    (mkdir(dir, 0700) < 0 && errno != EEXIST)) {
		log_err("creating %s: %s", dir, strerror(errno));
		return -errno;
	}
	rc = open_pin_dirs(r);
	if (rc < 0)
		return rc;
	bpf_object__for_each_map(m, r->skel->obj)
	{
		if (strchr(bpf_map__name(m), '.'))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, bpf_map__name(m));
		unlink(path); /* a leftover of a killed run */
		if (bpf_map__pin(m, path) != 0) {
			log_err("pinning %s: %s", path, strerror(errno));
			return -errno;
		}
	}
	snprintf(path, sizeof(path), "%s/%s", dir, R2P2_RT_PROG_NAME);
	unlink(path);
	if (bpf_program__pin(r->skel->progs.r2p2_router, path) != 0) {
		log_err("pinning %s: %s", path, strerror(errno));
		return -errno;
	}
	return 0;
}

/* ---- attaching --------------------------------------------------------------------- */

static __u32 xdp_mode; /* XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE, once attached */

/* ours_attached returns the fd of the r2p2_router program attached in `mode`, or -1. */
static int ours_attached(unsigned ifindex, __u32 mode)
{
	struct bpf_prog_info info = {0};
	__u32 len = sizeof(info), id = 0;
	int fd;

	if (bpf_xdp_query_id((int)ifindex, (int)mode, &id) != 0 || id == 0)
		return -1;
	fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0)
		return -1;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 ||
	    strcmp(info.name, R2P2_RT_PROG_NAME) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* attach_mode attaches in `mode`, replacing a leftover r2p2_router of a killed run. */
static int attach_mode(struct router *r, __u32 mode)
{
	int prog = bpf_program__fd(r->skel->progs.r2p2_router), old, rc;

	rc = bpf_xdp_attach((int)r->ifindex, prog, mode | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
	if (rc != -EBUSY && rc != -EEXIST)
		return rc;
	old = ours_attached(r->ifindex, mode);
	if (old < 0)
		return -EBUSY; /* somebody else's program: never replace it */
	{
		LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = old);

		rc = bpf_xdp_attach((int)r->ifindex, prog, mode | XDP_FLAGS_REPLACE, &opts);
	}
	close(old);
	if (rc == 0)
		log_info("replaced the r2p2_router program a previous run left on %s",
			 r->cfg.interface);
	return rc;
}

static int attach(struct router *r)
{
	int rc = attach_mode(r, XDP_FLAGS_DRV_MODE);

	if (rc == 0) {
		xdp_mode = XDP_FLAGS_DRV_MODE;
		return 0;
	}
	if (rc == -EBUSY) {
		log_err("%s already has another XDP program attached: not replacing it",
			r->cfg.interface);
		return rc;
	}
	log_warn("native XDP on %s failed (%s): attaching in generic (skb) mode, which is "
		 "much slower",
		 r->cfg.interface, strerror(-rc));
	rc = attach_mode(r, XDP_FLAGS_SKB_MODE);
	if (rc == 0) {
		xdp_mode = XDP_FLAGS_SKB_MODE;
		return 0;
	}
	log_err("attaching to %s: %s", r->cfg.interface, strerror(-rc));
	return rc;
}

static void detach(struct router *r)
{
	LIBBPF_OPTS(bpf_xdp_attach_opts, opts,
		    .old_prog_fd = bpf_program__fd(r->skel->progs.r2p2_router));

	if (xdp_mode && bpf_xdp_detach((int)r->ifindex, xdp_mode | XDP_FLAGS_REPLACE, &opts))
		log_warn("detaching from %s: %s", r->cfg.interface, strerror(errno));
	xdp_mode = 0;
}

/* ---- set-up ------------------------------------------------------------------------ */

/* lookup_user finds `user =` for set_pin_owner before anything is attached. */
static int lookup_user(const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc = getpwnam_r(name, &pw, buf, sizeof(buf), &res);

	if (!res) {
		log_err("user = %s: %s", name, rc ? strerror(rc) : "no such user");
		return rc ? -rc : -ENOENT;
	}
	*uid = pw.pw_uid;
	*gid = pw.pw_gid;
	return 0;
}

static int setup(struct router *r)
{
	char err[256];
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	uid_t uid = geteuid();
	gid_t gid = getegid();

	if (r->cfg.user[0] && lookup_user(r->cfg.user, &uid, &gid) < 0)
		return -ENOENT;
	r->ifindex = if_nametoindex(r->cfg.interface);
	if (!r->ifindex) {
		log_err("interface %s: %s", r->cfg.interface, strerror(errno));
		return -ENODEV;
	}
	r->neigh = neigh_new(r->cfg.interface, err, sizeof(err));
	if (!r->neigh) {
		log_err("%s", err);
		return -errno;
	}
	neigh_mac(r->neigh, r->ifmac);
	libbpf_set_print(libbpf_quiet);
	r->skel = router_bpf__open_and_load();
	if (!r->skel) {
		log_err("loading the XDP program: %s", strerror(errno));
		return -errno;
	}
	r->load_len = (sizeof(struct r2p2_rt_load) * R2P2_RT_MAX_SERVERS + page - 1) / page * page;
	r->load = mmap(NULL, r->load_len, PROT_READ | PROT_WRITE, MAP_SHARED,
		       bpf_map__fd(r->skel->maps.r2p2_rt_load), 0);
	if (r->load == MAP_FAILED) {
		r->load = NULL;
		log_err("mapping r2p2_rt_load: %s", strerror(errno));
		return -errno;
	}
	r->raw_fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (r->raw_fd < 0) {
		log_err("raw socket for the slow path: %s", strerror(errno));
		return -errno;
	}
	for (uint32_t id = 0; id < R2P2_RT_MAX_SERVICES; id++)
		r->svcs[id].fd = -1;
	if (fleet_apply(r) < 0)
		return -EINVAL;
	if (pin_all(r) < 0 || set_pin_owner(r, uid, gid) < 0)
		return -EIO;
	return attach(r);
}

/* maps_of fills `m` with the descriptors of the maps the metrics read. */
static void maps_of(const struct router *r, struct rt_maps *m)
{
	m->svcs = bpf_map__fd(r->skel->maps.r2p2_rt_svcs);
	m->srvs = bpf_map__fd(r->skel->maps.r2p2_rt_srvs);
	m->load = bpf_map__fd(r->skel->maps.r2p2_rt_load);
	m->fifo = bpf_map__fd(r->skel->maps.r2p2_rt_fifo);
	m->pstats = bpf_map__fd(r->skel->maps.r2p2_rt_pstats);
	m->stats = bpf_map__fd(r->skel->maps.r2p2_rt_stats);
}

static void teardown(struct router *r)
{
	if (r->skel) {
		detach(r);
		unpin_all(r);
	}
	fleet_close(r);
	if (r->raw_fd >= 0)
		close(r->raw_fd);
	if (r->load)
		munmap(r->load, r->load_len);
	router_bpf__destroy(r->skel);
	neigh_free(r->neigh);
}

/* ---- the loop ---------------------------------------------------------------------- */

static void reload(struct router *r)
{
	static struct rt_config next;
	char err[512];

	if (rt_config_load(r->cfg_path, &next, err, sizeof(err)) != 0) {
		log_err("reload: %s; keeping the running configuration", err);
		return;
	}
	if (strcmp(next.interface, r->cfg.interface) != 0) {
		log_err("reload: the interface cannot change (%s -> %s): restart instead; keeping "
			"the running configuration",
			r->cfg.interface, next.interface);
		return;
	}
	if (next.has_metrics != r->cfg.has_metrics || next.metrics_addr != r->cfg.metrics_addr ||
	    next.metrics_port != r->cfg.metrics_port) {
		log_warn("reload: metrics needs a restart; the endpoint stays where it started");
		next.has_metrics = r->cfg.has_metrics;
		next.metrics_addr = r->cfg.metrics_addr;
		next.metrics_port = r->cfg.metrics_port;
	}
	if (strcmp(next.user, r->cfg.user) != 0 || next.seccomp != r->cfg.seccomp) {
		log_warn("reload: user and seccomp need a restart; the running process keeps its "
			 "privileges");
		memcpy(next.user, r->cfg.user, sizeof(next.user));
		next.seccomp = r->cfg.seccomp;
	}
	r->cfg = next;
	if (fleet_apply(r) < 0)
		log_err("reload: applying failed; some services may be missing");
	else
		log_info("reloaded %s: %u service(s)", r->cfg_path, r->cfg.num_svcs);
}

/* The fds one poll() waits on: signals, neighbour events, each service's socket. */
struct pollset {
	struct pollfd pfd[2 + R2P2_RT_MAX_SERVICES];
	uint32_t ids[R2P2_RT_MAX_SERVICES]; /* service of pfd[2 + k] */
	int n;
	int timeout_ms;
};

/* poll_build fills `ps` for the services running now. */
static void poll_build(struct router *r, int sfd, struct pollset *ps)
{
	uint64_t now = now_ns();

	ps->n = 0;
	ps->timeout_ms = (int)((r->next_age_ns > now ? r->next_age_ns - now : 0) / 1000000) + 1;
	ps->pfd[ps->n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
	ps->pfd[ps->n++] = (struct pollfd){.fd = neigh_fd(r->neigh), .events = POLLIN};
	for (uint32_t id = 0; id < R2P2_RT_MAX_SERVICES; id++) {
		if (!r->svcs[id].used || r->svcs[id].fd < 0)
			continue;
		if (r->svcs[id].len && ps->timeout_ms > FIFO_POLL_MS)
			ps->timeout_ms = FIFO_POLL_MS;
		ps->ids[ps->n - 2] = id;
		ps->pfd[ps->n++] = (struct pollfd){.fd = r->svcs[id].fd, .events = POLLIN};
	}
}

/* handle_signal returns 1 to stop (SIGTERM, SIGINT), 0 to go on (SIGHUP reloads). */
static int handle_signal(struct router *r, int sfd)
{
	struct signalfd_siginfo si;

	if (read(sfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	if (si.ssi_signo != SIGHUP) {
		sd_notify(0, "STOPPING=1");
		return 1;
	}
	sd_notify(0, "RELOADING=1");
	reload(r);
	sd_notify(0, "READY=1");
	return 0;
}

/* tick runs the periodic phases (every AGE_PERIOD_NS) and moves the FIFOs. */
static void tick(struct router *r, uint64_t now)
{
	if (now >= r->next_age_ns) {
		fleet_resolve(r);
		fleet_age(r, now);
		r->next_age_ns = now + AGE_PERIOD_NS;
	}
	for (uint32_t id = 0; id < R2P2_RT_MAX_SERVICES; id++)
		if (r->svcs[id].used && r->svcs[id].len)
			slow_dispatch(r, &r->svcs[id], now);
}

/* run polls until SIGTERM/SIGINT. Returns the exit status. */
static int run(struct router *r, int sfd)
{
	static struct pollset ps;

	for (;;) {
		uint64_t now;

		poll_build(r, sfd, &ps);
		if (poll(ps.pfd, (nfds_t)ps.n, ps.timeout_ms) < 0 && errno != EINTR) {
			log_err("poll: %s", strerror(errno));
			return 1;
		}
		now = now_ns();
		if (ps.pfd[0].revents & POLLIN) {
			if (handle_signal(r, sfd))
				return 0;
			continue; /* a reload may have changed the services under ps */
		}
		if (ps.pfd[1].revents & POLLIN)
			neigh_process(r->neigh);
		for (int k = 2; k < ps.n; k++)
			if (ps.pfd[k].revents & POLLIN)
				slow_input(r, &r->svcs[ps.ids[k - 2]], now);
		tick(r, now);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: r2p2-router -c CONFIG [--check] [--log-level LEVEL]\n"
		   "       r2p2-router --status (-c CONFIG | -i IFNAME)\n"
		   "Routes R2P2 requests to the servers of each [router NAME] section in XDP\n"
		   "(docs/OPERATIONS.md, \"Router\"). SIGHUP reloads, SIGTERM detaches.\n"
		   "  -c, --config FILE    the configuration\n"
		   "  -i, --interface IF   --status of the router on IF (default: the config's)\n"
		   "      --status         print services, servers and counters from the pins\n"
		   "      --check          check the configuration; exit 0 (valid) or 1\n"
		   "  -l, --log-level L    error, warn, info (default) or debug\n"
		   "      --version        print the version and exit\n");
}

struct args {
	const char *ifname;
	bool status, check;
};

/* parse_args reads the command line. Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct router *r, struct args *a)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"interface", required_argument, NULL, 'i'},
					     {"status", no_argument, NULL, 's'},
					     {"check", no_argument, NULL, 'k'},
					     {"log-level", required_argument, NULL, 'l'},
					     {"version", no_argument, NULL, 'V'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	int c;

	while ((c = getopt_long(argc, argv, "c:i:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			r->cfg_path = optarg;
			break;
		case 'i':
			a->ifname = optarg;
			break;
		case 's':
			a->status = true;
			break;
		case 'k':
			a->check = true;
			break;
		case 'l':
			if (log_set_level(optarg) == 0)
				break;
			fprintf(stderr, "r2p2-router: unknown log level '%s'\n", optarg);
			return 2;
		case 'V':
			printf("r2p2-router %s\n", R2P2_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || (!r->cfg_path && !(a->status && a->ifname))) {
		usage(stderr);
		return 2;
	}
	return -1;
}

/* serve sets up, runs until SIGTERM and tears down. Returns the exit status. */
static int serve(struct router *r)
{
	sigset_t mask;
	int sfd, rc;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		perror("r2p2-router: signalfd");
		return 1;
	}
	r->raw_fd = r->pin_root_fd = r->pin_dir_fd = -1;
	rc = setup(r);
	if (rc == 0 && rt_metrics_listen(&r->cfg) != 0)
		rc = -1;
	if (rc == 0) {
		/* everything that needs a privilege is done, and no other thread runs yet */
		char err[256];
		struct rt_maps m;

		rc = rt_sandbox_enter(&r->cfg, err, sizeof(err));
		if (rc < 0)
			log_err("%s", err);
		maps_of(r, &m);
		if (rc == 0 && rt_metrics_start(&m) != 0)
			rc = -1;
	}
	if (rc == 0) {
		printf("router ready on %s (%s XDP), %u service(s), maps pinned under %s/%s\n",
		       r->cfg.interface, xdp_mode == XDP_FLAGS_SKB_MODE ? "generic" : "native",
		       r->cfg.num_svcs, RT_PIN_ROOT, r->cfg.interface);
		fflush(stdout);
		sd_notify(0, "READY=1"); /* the unit is Type=notify: started means attached */
		rc = run(r, sfd);
		log_info("detaching from %s", r->cfg.interface);
	} else {
		rc = 1;
	}
	rt_metrics_stop();
	teardown(r);
	close(sfd);
	return rc;
}

int main(int argc, char **argv)
{
	static struct router r;
	struct args a = {0};
	char err[512];
	int rc = parse_args(argc, argv, &r, &a);

	if (rc >= 0)
		return rc;
	if (r.cfg_path && rt_config_load(r.cfg_path, &r.cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "r2p2-router: %s\n", err);
		return 1;
	}
	if (a.status)
		return rt_status(a.ifname ? a.ifname : r.cfg.interface);
	if (a.check) {
		printf("%s: ok (%u router(s) on %s)\n", r.cfg_path, r.cfg.num_svcs,
		       r.cfg.interface);
		return 0;
	}
	return serve(&r);
}
