// SPDX-License-Identifier: MIT
/*
 * r2p2ctl: operate a running r2p2d over its control socket.
 *
 *   r2p2ctl [-s SOCKET] status
 *   r2p2ctl [-s SOCKET] reload
 *   r2p2ctl stek generate|rotate|status PATH
 *
 * The socket is -s SOCKET, else $R2P2_SOCKET, else R2P2_DEFAULT_SOCKET. Each
 * daemon command sends one struct r2p2_ctl_msg and reads one reply datagram;
 * local commands (stek) work on files and never contact the daemon. Exit
 * status: 0 success, 1 the daemon or the command refused or failed, 2 usage.
 * New commands (maps) are one function and one row of `commands`.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <r2p2/bpf_abi.h>
#include <r2p2/r2p2.h>
#include <r2p2/shm.h>

#include "router.h" /* rt_status: r2p2-router's pinned maps */
#include "stek.h"

#define REPLY_TIMEOUT_S 5
#define RELOAD_TIMEOUT_S 30 /* a reload loads every certificate and key the config names */

struct ctl {
	const char *socket_path;
	int fd;
};

struct command {
	const char *name; /* one word, or two ("stek rotate") */
	const char *args; /* for the usage text, "" if none */
	const char *help;
	int min_args, max_args; /* operands after the command name */
	int (*run)(struct ctl *ctl, int argc, char **argv);
	bool local; /* works on local files: no connection to r2p2d */
};

/* ---- transport -------------------------------------------------------------- */

/* ctl_connect connects to the daemon; prints why not and returns -1 on failure. */
static int ctl_connect(struct ctl *ctl)
{
	struct sockaddr_un sa;
	struct timeval tv = {.tv_sec = REPLY_TIMEOUT_S};
	size_t len = strlen(ctl->socket_path);
	int fd;

	if (len == 0 || len >= sizeof(sa.sun_path)) {
		fprintf(stderr, "r2p2ctl: socket path '%s' is %s (at most %zu bytes)\n",
			ctl->socket_path, len ? "too long" : "empty", sizeof(sa.sun_path) - 1);
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, ctl->socket_path, len + 1);

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "r2p2ctl: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		const char *hint = "";

		if (e == ENOENT || e == ECONNREFUSED)
			hint = " (is r2p2d running?)";
		else if (e == EACCES || e == EPERM)
			hint = " (run as root or as a member of the daemon's socket_group)";
		else if (e == EPROTOTYPE)
			hint = " (is that an r2p2d socket?)";
		fprintf(stderr, "r2p2ctl: cannot reach r2p2d at %s: %s%s\n", ctl->socket_path,
			strerror(e), hint);
		close(fd);
		return -1;
	}
	/* a wedged daemon must not wedge the operator's shell */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	ctl->fd = fd;
	return 0;
}

/*
 * ctl_request sends a message of `type` with `name` and reads the reply into
 * `buf` (R2P2_CTL_MAX_MSG bytes). Returns the reply, or NULL after printing why.
 * The reply's text is checked to lie inside the datagram.
 */
static const struct r2p2_ctl_msg *ctl_request(struct ctl *ctl, uint16_t type, const char *name,
					      int32_t value, char *buf)
{
	struct r2p2_ctl_msg req, *rep = (struct r2p2_ctl_msg *)buf;
	struct iovec iov = {.iov_base = buf, .iov_len = R2P2_CTL_MAX_MSG};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	memset(&req, 0, sizeof(req));
	req.magic = R2P2_CTL_MAGIC;
	req.version = R2P2_CTL_VERSION;
	req.type = type;
	req.value = value;
	if (name)
		snprintf(req.name, sizeof(req.name), "%s", name);

	if (send(ctl->fd, &req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req)) {
		fprintf(stderr, "r2p2ctl: sending to r2p2d at %s: %s\n", ctl->socket_path,
			strerror(errno));
		return NULL;
	}
	n = recvmsg(ctl->fd, &mh, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			fprintf(stderr, "r2p2ctl: r2p2d at %s did not answer within %d s\n",
				ctl->socket_path, REPLY_TIMEOUT_S);
		else
			fprintf(stderr, "r2p2ctl: reading from r2p2d at %s: %s\n", ctl->socket_path,
				strerror(errno));
		return NULL;
	}
	if (n == 0) {
		fprintf(stderr, "r2p2ctl: r2p2d at %s closed the connection without answering\n",
			ctl->socket_path);
		return NULL;
	}
	if ((size_t)n < sizeof(*rep) || rep->magic != R2P2_CTL_MAGIC) {
		fprintf(stderr, "r2p2ctl: malformed reply from %s (%zd bytes)\n", ctl->socket_path,
			n);
		return NULL;
	}
	if (rep->version != R2P2_CTL_VERSION) {
		fprintf(stderr,
			"r2p2ctl: r2p2d speaks control protocol version %u, this r2p2ctl %u\n",
			rep->version, R2P2_CTL_VERSION);
		return NULL;
	}
	if (mh.msg_flags & MSG_TRUNC || rep->text_len > (size_t)n - sizeof(*rep)) {
		fprintf(stderr, "r2p2ctl: truncated reply from %s\n", ctl->socket_path);
		return NULL;
	}
	return rep;
}

static const char *reply_text(const struct r2p2_ctl_msg *rep)
{
	return (const char *)(rep + 1);
}

/* print_error reports an R2P2_CTL_ERROR reply on stderr. */
static void print_error(const struct r2p2_ctl_msg *rep)
{
	if (rep->text_len)
		fprintf(stderr, "r2p2ctl: r2p2d: %.*s\n", (int)rep->text_len, reply_text(rep));
	else
		fprintf(stderr, "r2p2ctl: r2p2d: %s\n",
			strerror(rep->value > 0 ? rep->value : -rep->value));
}

/* ---- commands --------------------------------------------------------------- */

static int cmd_status(struct ctl *ctl, int argc, char **argv)
{
	const struct r2p2_ctl_msg *rep;
	char *buf;
	int rc = 1;

	bool json = argc == 1 && strcmp(argv[0], "--json") == 0;

	if (argc && !json) {
		fprintf(stderr, "r2p2ctl: status takes no operand but --json\n");
		return 2;
	}
	buf = malloc(R2P2_CTL_MAX_MSG);
	if (!buf) {
		fprintf(stderr, "r2p2ctl: out of memory\n");
		return 1;
	}
	rep = ctl_request(ctl, R2P2_CTL_STATUS, NULL, json ? R2P2_CTL_STATUS_JSON : 0, buf);
	if (!rep)
		goto out;
	if (rep->type == R2P2_CTL_ERROR) {
		print_error(rep);
		goto out;
	}
	if (rep->type != R2P2_CTL_STATUS_OK) {
		fprintf(stderr, "r2p2ctl: unexpected reply type %u to status\n", rep->type);
		goto out;
	}
	fwrite(reply_text(rep), 1, rep->text_len, stdout);
	if (rep->text_len && reply_text(rep)[rep->text_len - 1] != '\n')
		putchar('\n');
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "r2p2ctl: writing output: %s\n", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

/*
 * cmd_reload asks the daemon to reload its config file and prints what it said:
 * what changed on stdout (exit 0), or why not on stderr (exit 1; the daemon keeps
 * its running config). systemd's ExecReload runs it, so `systemctl reload` fails
 * when the new config does.
 */
static int cmd_reload(struct ctl *ctl, int argc, char **argv)
{
	struct timeval tv = {.tv_sec = RELOAD_TIMEOUT_S};
	const struct r2p2_ctl_msg *rep;
	char *buf;
	int rc = 1;

	(void)argc;
	(void)argv;
	buf = malloc(R2P2_CTL_MAX_MSG);
	if (!buf) {
		fprintf(stderr, "r2p2ctl: out of memory\n");
		return 1;
	}
	setsockopt(ctl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	rep = ctl_request(ctl, R2P2_CTL_RELOAD, NULL, 0, buf);
	if (!rep)
		goto out;
	if (rep->type == R2P2_CTL_ERROR) {
		if (rep->text_len)
			fprintf(stderr, "%.*s\n", (int)rep->text_len, reply_text(rep));
		fprintf(stderr,
			"r2p2ctl: reload refused (%s); r2p2d keeps its running "
			"configuration\n",
			rep->value == EBUSY    ? "a change needs a restart"
			: rep->value == EINVAL ? "the configuration is invalid"
					       : strerror(rep->value > 0 ? rep->value : EIO));
		goto out;
	}
	if (rep->type != R2P2_CTL_RELOAD_OK) {
		fprintf(stderr, "r2p2ctl: unexpected reply type %u to reload\n", rep->type);
		goto out;
	}
	printf("%.*s\n", (int)rep->text_len, reply_text(rep));
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	free(buf);
	return rc;
}

/* ---- stek: session-ticket key files (local, no daemon) ------------------------ */

static void print_keys(const struct stek_set *set)
{
	char buf[512];

	stek_describe(set, buf, sizeof(buf));
	fputs(buf, stdout);
}

static int cmd_stek_generate(struct ctl *ctl, int argc, char **argv)
{
	struct stek_set *set = NULL;
	char err[512];

	(void)ctl;
	(void)argc;
	if (stek_generate_file(argv[0], err, sizeof(err)) != 0 ||
	    stek_load(argv[0], &set, err, sizeof(err)) != 0) {
		fprintf(stderr, "r2p2ctl: %s\n", err);
		return 1;
	}
	printf("%s: new STEK file, mode 0600\n", argv[0]);
	print_keys(set);
	printf("distribute it to every server of the service through your secret store\n");
	stek_set_put(set);
	return 0;
}

static int cmd_stek_rotate(struct ctl *ctl, int argc, char **argv)
{
	struct stek_set *set = NULL;
	char err[512];

	(void)ctl;
	(void)argc;
	if (stek_rotate_file(argv[0], &set, err, sizeof(err)) != 0) {
		fprintf(stderr, "r2p2ctl: %s\n", err);
		return 1;
	}
	printf("%s: rotated\n", argv[0]);
	print_keys(set);
	stek_set_put(set);
	return 0;
}

static int cmd_stek_status(struct ctl *ctl, int argc, char **argv)
{
	const char *path = argv[0];
	struct stek_set *set = NULL;
	struct passwd *pw;
	struct group *gr;
	struct stat st, lst;
	char when[64], err[512];
	bool has_next = false;
	long long age;
	int rc = 0;

	(void)ctl;
	(void)argc;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "r2p2ctl: stek: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (stek_load_ex(path, STEK_LOAD_ANY_MODE, &set, err, sizeof(err)) != 0) {
		fprintf(stderr, "r2p2ctl: %s\n", err);
		return 1;
	}
	pw = getpwuid(st.st_uid);
	gr = getgrgid(st.st_gid);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&st.st_mtime));
	age = (long long)(time(NULL) - st.st_mtime);
	printf("%s%s: mode %04o, owner %s:%s, modified %s (%lld h %lld min ago)\n", path,
	       lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode) ? " (symbolic link)" : "",
	       (unsigned)(st.st_mode & 07777), pw ? pw->pw_name : "?", gr ? gr->gr_name : "?", when,
	       age / 3600, age % 3600 / 60);
	print_keys(set);
	if (st.st_mode & 077) {
		fprintf(stderr,
			"r2p2ctl: warning: %s is mode %04o: group or others can access it and "
			"r2p2d refuses it (chmod 600)\n",
			path, (unsigned)(st.st_mode & 07777));
		rc = 1;
	}
	for (size_t i = 0; i < stek_num_keys(set); i++)
		has_next |= stek_key_at(set, i)->role == STEK_NEXT;
	if (!has_next)
		printf("note: no next key: the next 'r2p2ctl stek rotate' promotes a key no "
		       "server has seen yet\n");
	stek_set_put(set);
	return rc;
}

/*
 * cmd_maps prints the XDP program's verdict counters of each interface (or of
 * IFNAME), summed over CPUs, from the maps pinned under /sys/fs/bpf/r2p2/: the same
 * numbers `bpftool map dump pinned .../r2p2_stats` shows per CPU.
 */
static int cmd_maps(struct ctl *ctl, int argc, char **argv)
{
	const char *root = "/sys/fs/bpf/r2p2";
	struct dirent *e;
	int found = 0, ncpu = libbpf_num_possible_cpus();
	DIR *d;

	(void)ctl;
	d = opendir(root);
	if (!d || ncpu <= 0) {
		fprintf(stderr,
			"r2p2ctl: no XDP program pinned under %s: %s (is r2p2d running with "
			"backend = xdp?)\n",
			root, d ? "cannot count CPUs" : strerror(errno));
		if (d)
			closedir(d);
		return 1;
	}
	while ((e = readdir(d))) {
		char path[512];
		struct r2p2_stats *v, sum = {0};
		__u32 key = 0;
		int fd;

		if (e->d_name[0] == '.' || (argc == 1 && strcmp(argv[0], e->d_name) != 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s/r2p2_stats", root, e->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		v = calloc((size_t)ncpu, sizeof(*v));
		if (v && bpf_map_lookup_elem(fd, &key, v) == 0) {
			for (int c = 0; c < ncpu; c++) {
				sum.steered += v[c].steered;
				sum.no_socket += v[c].no_socket;
				sum.dropped_malformed += v[c].dropped_malformed;
				sum.passed_not_r2p2 += v[c].passed_not_r2p2;
				sum.passed_fragment += v[c].passed_fragment;
				sum.passed_ipv6_ext += v[c].passed_ipv6_ext;
				sum.passed_runt += v[c].passed_runt;
			}
			printf("%s:\n  steered %llu\n  no_socket %llu\n  dropped_malformed %llu\n"
			       "  passed_not_r2p2 %llu\n  passed_fragment %llu\n  passed_ipv6_ext "
			       "%llu\n"
			       "  passed_runt %llu\n",
			       e->d_name, (unsigned long long)sum.steered,
			       (unsigned long long)sum.no_socket,
			       (unsigned long long)sum.dropped_malformed,
			       (unsigned long long)sum.passed_not_r2p2,
			       (unsigned long long)sum.passed_fragment,
			       (unsigned long long)sum.passed_ipv6_ext,
			       (unsigned long long)sum.passed_runt);
			found++;
		}
		free(v);
		close(fd);
	}
	closedir(d);
	if (!found) {
		fprintf(stderr, "r2p2ctl: no r2p2_stats map pinned under %s%s%s\n", root,
			argc ? " for " : "", argc ? argv[0] : "");
		return 1;
	}
	return 0;
}

/* cmd_router prints what the pinned maps of r2p2-router on IFNAME say (as
 * `r2p2-router --status -i IFNAME`; no r2p2d needed). */
static int cmd_router(struct ctl *ctl, int argc, char **argv)
{
	(void)ctl;
	(void)argc;
	return rt_status(argv[0]);
}

static const struct command commands[] = {
    {"maps", "[IFNAME]", "XDP verdict counters summed over CPUs (pinned maps, no r2p2d needed)", 0,
     1, cmd_maps, true},
    {"router", "IFNAME",
     "r2p2-router's services, servers and counters on IFNAME (pinned maps, no r2p2d needed)", 1, 1,
     cmd_router, true},
    {"status", "[--json]",
     "show workers, attached apps and per-service counters (--json: as one JSON object)", 0, 1,
     cmd_status, false},
    {"reload", "",
     "reload the daemon's config file: print what changed, or why not and exit 1 (root or the "
     "daemon's user)",
     0, 0, cmd_reload, false},
    {"stek generate", "PATH", "create a new STEK file (one random current key, mode 0600)", 1, 1,
     cmd_stek_generate, true},
    {"stek rotate", "PATH", "previous := current, current := next, next := new random key", 1, 1,
     cmd_stek_rotate, true},
    {"stek status", "PATH", "show key ids, roles, fingerprints, file mode and age", 1, 1,
     cmd_stek_status, true},
};

/* find_command matches `argv` (`argc` words) against one- and two-word command
 * names and stores how many words the name took in `*out_words`. */
static const struct command *find_command(int argc, char **argv, int *out_words)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const char *name = commands[i].name, *sp = strchr(name, ' ');

		if (!sp && strcmp(name, argv[0]) == 0) {
			*out_words = 1;
			return &commands[i];
		}
		if (sp && argc >= 2 && strlen(argv[0]) == (size_t)(sp - name) &&
		    strncmp(name, argv[0], (size_t)(sp - name)) == 0 &&
		    strcmp(sp + 1, argv[1]) == 0) {
			*out_words = 2;
			return &commands[i];
		}
	}
	return NULL;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: r2p2ctl [-s SOCKET] COMMAND [ARGS]\n"
		"\n"
		"Operate a running r2p2d through its control socket.\n"
		"\n"
		"options:\n"
		"  -s, --socket SOCKET  control socket (default: $R2P2_SOCKET, else %s)\n"
		"  -V, --version        print the version and exit\n"
		"  -h, --help           show this help\n"
		"\n"
		"commands:\n",
		R2P2_DEFAULT_SOCKET);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		char head[64];

		snprintf(head, sizeof(head), "%s%s%s", commands[i].name,
			 commands[i].args[0] ? " " : "", commands[i].args);
		fprintf(out, "  %-20s %s\n", head, commands[i].help);
	}
	fprintf(out,
		"\nstek commands work on files and do not need a running r2p2d.\n"
		"exit status: 0 ok, 1 r2p2d (or the command) refused or failed, 2 usage error\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct ctl ctl = {.fd = -1};
	const struct command *cmd;
	const char *env;
	int opt, nargs, words, rc;

	ctl.socket_path = R2P2_DEFAULT_SOCKET;
	env = getenv("R2P2_SOCKET");
	if (env && env[0])
		ctl.socket_path = env;

	/* '+': options end at the command, so commands may take their own */
	while ((opt = getopt_long(argc, argv, "+s:Vh", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			ctl.socket_path = optarg;
			break;
		case 'V':
			printf("r2p2ctl %s\n", R2P2_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "r2p2ctl: no command given\n\n");
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[optind], "help") == 0) {
		usage(stdout);
		return 0;
	}
	cmd = find_command(argc - optind, argv + optind, &words);
	if (!cmd) {
		fprintf(stderr, "r2p2ctl: unknown command '%s%s%s'\n\n", argv[optind],
			optind + 1 < argc && strcmp(argv[optind], "stek") == 0 ? " " : "",
			optind + 1 < argc && strcmp(argv[optind], "stek") == 0 ? argv[optind + 1]
									       : "");
		usage(stderr);
		return 2;
	}
	nargs = argc - optind - words;
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		fprintf(stderr, "r2p2ctl: usage: r2p2ctl [-s SOCKET] %s%s%s\n", cmd->name,
			cmd->args[0] ? " " : "", cmd->args);
		return 2;
	}
	if (cmd->local)
		return cmd->run(&ctl, nargs, argv + optind + words);
	if (ctl_connect(&ctl) != 0)
		return 1;
	rc = cmd->run(&ctl, nargs, argv + optind + words);
	close(ctl.fd);
	return rc;
}
