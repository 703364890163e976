// SPDX-License-Identifier: MIT
/*
 * A worker: one thread, one io_uring, one protocol engine. Everything the
 * worker does arrives as a completion on its ring, and each kind of operation
 * (encoded in user_data, worker_int.h) has one handler:
 *   UD_RECV, UD_SEND  the kernel UDP sockets                  net_udp.c
 *   UD_NET            the backend's own (AF_XDP rx, neighbours) net_xsk.c
 *   UD_DOORBELL       an app rang its submission doorbell       lanes.c
 *   UD_TIMER          the engine's next deadline or housekeeping
 *   UD_INBOX          the main thread posted commands
 *   UD_STEK           the STEK file's directory changed
 * The loop is a list of named phases: reap completions, run timers and
 * housekeeping, serve the app lanes, flush the backend, report a drain, arm the
 * next deadline, wait.
 */
#include "worker_int.h"

#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "addr.h"
#include "clock.h"
#include "err.h"
#include "ext.h"
#include "log.h"
#include "neigh.h"
#include "stek.h"

/* ---- io_uring helpers ----------------------------------------------------------- */

struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	if (!sqe) {
		/* The SQ is full: hand what we have to the kernel and try again. */
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

void cancel_op(struct worker *w, uint64_t ud)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_CANCEL, 0, 0));
}

void arm_poll(struct worker *w, int fd, enum ud_kind kind, uint32_t idx)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud_make(kind, idx, 0));
}

static void arm_inbox(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, w->inbox_efd, &w->inbox_val, sizeof(w->inbox_val), 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_INBOX, 0, 0));
}

static void arm_timer(struct worker *w, uint64_t deadline)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	w->timer_ts.tv_sec = (long long)(deadline / NS_PER_S);
	w->timer_ts.tv_nsec = (long long)(deadline % NS_PER_S);
	if (w->timer_deadline) {
		io_uring_prep_timeout_update(sqe, &w->timer_ts, ud_make(UD_TIMER, 0, 0),
					     IORING_TIMEOUT_ABS);
		io_uring_sqe_set_data64(sqe, ud_make(UD_TIMER_UPD, 0, 0));
	} else {
		io_uring_prep_timeout(sqe, &w->timer_ts, 0, IORING_TIMEOUT_ABS);
		io_uring_sqe_set_data64(sqe, ud_make(UD_TIMER, 0, 0));
	}
	w->timer_deadline = deadline;
}

/* ---- the STEK ---------------------------------------------------------------------- */

/* watch_dir_of watches the directory of `path` on the inotify `ifd`. */
static int watch_dir_of(int ifd, const char *path)
{
	char dir[CFG_PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", path);
	return inotify_add_watch(ifd, dirname(dir),
				 IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB);
}

/* watch_stek_dirs watches the directory of every STEK file the config names (the
 * daemon's and the services' own); those already watched stay. */
static bool watch_stek_dirs(struct worker *w)
{
	const struct cfg *c = &w->cfg->cfg;
	bool ok = !c->stek_path[0] || watch_dir_of(w->stek_ifd, c->stek_path) >= 0;

	for (size_t i = 0; i < c->num_serves; i++)
		if (c->serves[i].stek[0] && watch_dir_of(w->stek_ifd, c->serves[i].stek) < 0)
			ok = false;
	return ok;
}

/* Watch the STEK files' directories: editors and secret stores replace a file by rename. */
static void watch_stek(struct worker *w)
{
	const struct cfg *c = &w->cfg->cfg;
	bool any = c->stek_path[0];

	for (size_t i = 0; i < c->num_serves; i++)
		any = any || c->serves[i].stek[0];
	if (!any || w->stek_ifd >= 0)
		return;
	w->stek_ifd = inotify_init1(IN_CLOEXEC);
	if (w->stek_ifd < 0 || !watch_stek_dirs(w)) {
		log_warn("worker %u: cannot watch the STEK files for changes (%s); SIGHUP reloads "
			 "them",
			 w->id, strerror(errno));
		if (w->stek_ifd >= 0)
			close(w->stek_ifd);
		w->stek_ifd = -1;
	}
}

static void arm_stek_watch(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (w->stek_ifd < 0 || !(sqe = get_sqe(w)))
		return;
	io_uring_prep_read(sqe, w->stek_ifd, w->stek_ev, sizeof(w->stek_ev), 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_STEK, 0, 0));
}

/* set_stek switches every tls server of this worker to `set` (a reference is taken). */
static void set_stek(struct worker *w, struct stek_set *set)
{
	struct stek_set *old = w->sec.stek;

	w->sec.stek = set ? stek_set_get(set) : NULL;
	for (int i = 1; i < MAX_SOCKS; i++)
		sec_service_set_stek(&w->socks[i].sec, w->sec.stek);
	stek_set_put(old);
}

/*
 * reload_daemon_stek re-reads the [daemon] STEK file. A bad file keeps the keys in
 * use; only worker 0 speaks, so one change gives one log line.
 */
static void reload_daemon_stek(struct worker *w)
{
	struct stek_set *set;
	char err[512], before[512], after[512];

	if (!w->cfg->cfg.stek_path[0])
		return;
	if (stek_load(w->cfg->cfg.stek_path, &set, err, sizeof(err)) < 0) {
		if (w->id == 0)
			log_err("%s; keeping the keys in use", err);
		return;
	}
	before[0] = '\0';
	if (w->sec.stek)
		stek_describe(w->sec.stek, before, sizeof(before));
	stek_describe(set, after, sizeof(after));
	if (strcmp(before, after) != 0) {
		if (w->id == 0)
			log_info("STEK reloaded from %s:\n%s", w->cfg->cfg.stek_path, after);
		set_stek(w, set);
	}
	stek_set_put(set);
}

/* reload_stek re-reads the daemon's STEK file and every service's own, as above. */
static void reload_stek(struct worker *w)
{
	char err[600];
	bool changed;

	reload_daemon_stek(w);
	for (int i = 1; i < MAX_SOCKS; i++) {
		struct sec_service *svc = &w->socks[i].sec;

		if (sec_service_reload_stek(svc, &changed, err, sizeof(err)) < 0) {
			if (w->id == 0)
				log_err("%s; keeping the keys in use", err);
		} else if (changed && w->id == 0) {
			log_info("STEK of [serve %s] reloaded from %s", svc->name, svc->stek_path);
		}
	}
}

/* ---- the inbox ------------------------------------------------------------------------ */

/* sec_from_cfg gives the security modes what the config says of this server. */
static void sec_from_cfg(struct worker *w)
{
	const struct cfg *c = &w->cfg->cfg;
	struct sec_env *env = &w->sec;

	env->sealed_window_ms = c->sealed_window_ms;
	env->replay_window_ms = c->replay_window_ms;
	env->num_self = addr_local_list(&c->listen_addr, env->self, SEC_MAX_SELF - 1);
	if (c->has_router)
		env->self[env->num_self++] = c->router;
}

/* uses_encryption says whether the config serves or calls any tls or sealed service. */
static bool uses_encryption(const struct cfg *c)
{
	for (size_t i = 0; i < c->num_serves; i++)
		if (c->serves[i].security != CFG_SEC_PLAIN)
			return true;
	for (size_t i = 0; i < c->num_calls; i++)
		if (c->calls[i].security != CFG_SEC_PLAIN)
			return true;
	return false;
}

/* eng_config_of fills `ec` with what the config says of this worker's engine. */
static void eng_config_of(const struct worker *w, struct eng_config *ec)
{
	const struct cfg *c = &w->cfg->cfg;

	eng_config_default(ec);
	ec->max_msg_len = c->max_msg_len;
	ec->dedup_window_ns = c->dedup_window_ms * NS_PER_MS;
	ec->reassembly_timeout_ns = c->reassembly_timeout_ms * NS_PER_MS;
	ec->exec_timeout_ns = c->exec_timeout_ms * NS_PER_MS;
	ec->max_client_calls = w->num_calls_cap;
	ec->max_reassembly_bytes = c->max_reassembly_bytes;
	ec->max_half_open_per_source = c->max_half_open_per_source;
	ec->has_router = c->has_router;
	ec->router = c->router;
	ec->allow_flags = uses_encryption(c);
}

/*
 * use_registers takes the strike registers of a reload that added the first tls or
 * sealed service: a register that is new here starts empty, so the requests and
 * tickets that predate it are refused as after a start (restart guard).
 */
static void use_registers(struct worker *w, const struct cmd *c)
{
	struct sec_env *env = &w->sec;

	if (!env->replay && c->replay) {
		env->replay = c->replay;
		if (c->since_ms > env->start_ms)
			env->start_ms = c->since_ms; /* no tls server existed to be affected */
	}
	if (!env->sealed_replay && c->sealed_replay) {
		env->sealed_replay = c->sealed_replay;
		if (c->since_ms > env->sealed_start_ms)
			env->sealed_start_ms = c->since_ms;
	}
}

/* note_new_keys says which tls servers took a new chain, key or early_data (worker 0
 * speaks for all: each worker reads the same files). */
static void note_new_keys(struct worker *w, struct cmd_done *done)
{
	char line[160];

	for (int i = 1; i < MAX_SOCKS; i++) {
		struct sec_service *svc = &w->socks[i].sec;

		if (!svc->keys_changed)
			continue;
		svc->keys_changed = false;
		if (w->id != 0)
			continue;
		snprintf(line, sizeof(line),
			 "reload: [serve %s] new certificate, key or early_data (port %u)",
			 svc->name, w->socks[i].port);
		cmd_done_note(done, line);
	}
}

/*
 * new_cfg switches the worker to the config of `c`: the engine's settings, the
 * strike registers, the service sockets and their security state, the STEK
 * watch. Returns 0, or a negative errno with `err` filled (the main thread then
 * switches every worker back to the running config).
 */
static int new_cfg(struct worker *w, struct cmd *c, char *err, size_t err_len)
{
	struct cfg_ref *old = w->cfg;
	struct eng_config ec;
	int ret;

	w->cfg = c->cfg;
	c->cfg = NULL;
	use_registers(w, c);
	sec_from_cfg(w);
	eng_config_of(w, &ec);
	ret = eng_reconfigure(w->eng, &ec);
	if (ret < 0)
		set_err(err, err_len, "worker %u: engine settings refused", w->id);
	else
		ret = udp_sync_services(w, err, err_len);
	note_new_keys(w, c->done);
	cfg_ref_put(old);
	if (w->stek_ifd >= 0) {
		watch_stek_dirs(w); /* a service's new STEK file */
	} else {
		watch_stek(w); /* the first STEK file of this daemon */
		arm_stek_watch(w);
	}
	reload_stek(w); /* a reload re-reads the STEK too */
	return ret;
}

static void handle_cmd(struct worker *w, struct cmd *c)
{
	switch (c->type) {
	case CMD_ADD_APP:
		lanes_add(w, c->app);
		c->app = NULL;
		break;
	case CMD_REGISTER:
		break; /* the app's serves[] is read on delivery; nothing to cache */
	case CMD_REMOVE_APP:
		lanes_remove_app(w, c->app);
		break;
	case CMD_NEW_CFG: {
		char err[256] = "";
		int ret = new_cfg(w, c, err, sizeof(err));

		cmd_done_report(c->done, ret, err);
		break;
	}
	case CMD_STOP:
		w->stop = true;
		break;
	case CMD_PACKET: {
		int slot = udp_slot_by_port(w, c->port);
		if (slot >= 0)
			eng_input(w->eng, (unsigned)slot, &c->src, c->data, c->len, now_ns());
		break;
	}
	case CMD_DRAIN:
		w->draining = true;
		w->drain_deadline = now_ns() + w->cfg->cfg.drain_timeout_ms * NS_PER_MS;
		break;
	}
	app_put(c->app);
	cfg_ref_put(c->cfg);
	cmd_done_put(c->done);
	free(c);
}

static void handle_inbox(struct worker *w)
{
	struct cmd *c;

	pthread_mutex_lock(&w->inbox_lock);
	c = w->inbox_head;
	w->inbox_head = w->inbox_tail = NULL;
	pthread_mutex_unlock(&w->inbox_lock);
	while (c) {
		struct cmd *next = c->next;
		handle_cmd(w, c);
		c = next;
	}
	arm_inbox(w);
}

struct cmd_done *cmd_done_new(unsigned num)
{
	struct cmd_done *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->pending = num;
	d->refs = 1;
	return d;
}

struct cmd_done *cmd_done_get(struct cmd_done *d)
{
	pthread_mutex_lock(&d->lock);
	d->refs++;
	pthread_mutex_unlock(&d->lock);
	return d;
}

void cmd_done_put(struct cmd_done *d)
{
	bool last;

	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	last = --d->refs == 0;
	pthread_mutex_unlock(&d->lock);
	if (!last)
		return;
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

void cmd_done_note(struct cmd_done *d, const char *note)
{
	size_t used;

	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	used = strlen(d->notes);
	snprintf(d->notes + used, sizeof(d->notes) - used, "%s\n", note);
	pthread_mutex_unlock(&d->lock);
}

void cmd_done_notes(struct cmd_done *d, char *out, size_t out_len)
{
	pthread_mutex_lock(&d->lock);
	snprintf(out, out_len, "%s", d->notes);
	pthread_mutex_unlock(&d->lock);
}

void cmd_done_report(struct cmd_done *d, int err, const char *why)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	if (err < 0 && !d->err) {
		d->err = err;
		snprintf(d->why, sizeof(d->why), "%s", why && why[0] ? why : strerror(-err));
	}
	if (d->pending)
		d->pending--;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

int cmd_done_wait(struct cmd_done *d, unsigned timeout_ms, char *out_why, size_t why_len)
{
	struct timespec until;
	int ret = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->lock);
	while (d->pending && ret == 0)
		ret = pthread_cond_timedwait(&d->cond, &d->lock, &until);
	if (d->pending) {
		ret = -ETIMEDOUT;
		snprintf(out_why, why_len, "%u workers did not answer within %u ms", d->pending,
			 timeout_ms);
	} else {
		ret = d->err;
		if (ret < 0)
			snprintf(out_why, why_len, "%s", d->why);
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

void worker_post(struct worker *w, struct cmd *c)
{
	uint64_t one = 1;

	c->next = NULL;
	pthread_mutex_lock(&w->inbox_lock);
	if (w->inbox_tail)
		w->inbox_tail->next = c;
	else
		w->inbox_head = c;
	w->inbox_tail = c;
	pthread_mutex_unlock(&w->inbox_lock);
	if (write(w->inbox_efd, &one, sizeof(one)) < 0)
		log_err("worker %u: inbox doorbell: %s", w->id, strerror(errno));
}

/* ---- completions ------------------------------------------------------------------------ */

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe, uint64_t now)
{
	switch (ud_kind(cqe->user_data)) {
	case UD_RECV:
		udp_handle_recv(w, cqe, now);
		break;
	case UD_SEND:
		udp_handle_send(w, cqe);
		break;
	case UD_NET:
		w->net->complete(w, cqe, now);
		break;
	case UD_DOORBELL:
		lanes_handle_doorbell(w, cqe, now);
		break;
	case UD_TIMER:
		w->timer_deadline = 0;
		break;
	case UD_TIMER_UPD:
		/* The timer fired before the update reached it: arm a new one. */
		if (cqe->res == -ENOENT)
			w->timer_deadline = 0;
		break;
	case UD_INBOX:
		handle_inbox(w);
		break;
	case UD_STEK:
		if (cqe->res > 0)
			reload_stek(w);
		/* an interrupted read must not end the watch: later changes would go unseen */
		if (cqe->res > 0 || cqe->res == -EINTR || cqe->res == -EAGAIN)
			arm_stek_watch(w);
		else if (cqe->res != -ECANCELED)
			log_warn("worker %u: the STEK watch stopped (%s); SIGHUP reloads the files",
				 w->id, strerror(-cqe->res));
		break;
	case UD_CANCEL:
		break;
	}
}

/* ---- engine callbacks ---------------------------------------------------------------------- */

static void on_send(void *ctx, unsigned sock, const struct r2p2_addr *dst, const struct iovec *iov,
		    int iovcnt)
{
	struct worker *w = ctx;

	if (sock >= MAX_SOCKS || w->socks[sock].fd < 0)
		return;
	w->net->send(w, sock, dst, iov, iovcnt);
}

static const struct eng_ops worker_eng_ops = {
    .send = on_send,
    .request_ex = on_request,
    .complete = on_complete,
};

/* ---- the loop, phase by phase ------------------------------------------------------------------
 */

/* arm_all starts every standing operation when the thread starts. */
static void arm_all(struct worker *w)
{
	arm_inbox(w);
	arm_stek_watch(w);
	w->net->arm(w);
}

/* reap runs the handler of every completion that is ready. */
static void reap(struct worker *w, uint64_t now)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&w->ring, head, cqe)
	{
		handle_cqe(w, cqe, now);
		n++;
	}
	io_uring_cq_advance(&w->ring, n);
}

/* housekeeping runs the engine's timers, and every 100 ms the slow chores. */
static void housekeeping(struct worker *w, uint64_t now)
{
	eng_tick(w->eng, now);
	if (now < w->next_housekeeping)
		return;
	w->next_housekeeping = now + HOUSEKEEPING_NS;
	for (int i = 1; i < MAX_SOCKS; i++)
		sec_service_expire(&w->socks[i].sec, now, TLS_PENDING_AGE_NS);
	calls_renew(w, now);
	calls_expire_queued(w, now);
	execs_expire(w, now);
	snapshot_publish(w);
}

/* report_drained tells the main thread once that this worker has drained (or given
 * up at the deadline); it then keeps answering (DROP, ESHUTDOWN) until told to stop. */
static void report_drained(struct worker *w, uint64_t now)
{
	uint64_t one = 1;
	bool idle = w->calls_inflight == 0 && w->calls_queued == 0 && w->exec_count == 0;

	if (!w->draining || w->drained_reported || (!idle && now < w->drain_deadline))
		return;
	if (!idle)
		log_warn("worker %u: drain timeout with %u calls and %u requests in flight", w->id,
			 w->calls_inflight, w->exec_count);
	w->drained_reported = true;
	if (write(w->drained_efd, &one, sizeof(one)) < 0)
		log_err("worker %u: drained notice: %s", w->id, strerror(errno));
}

/* arm_deadline sets the timer to the earliest of the engine's, housekeeping and drain. */
static void arm_deadline(struct worker *w)
{
	uint64_t deadline = eng_next_deadline(w->eng);

	if (deadline > w->next_housekeeping)
		deadline = w->next_housekeeping;
	if (w->draining && !w->drained_reported && deadline > w->drain_deadline)
		deadline = w->drain_deadline;
	if (!w->timer_deadline || deadline < w->timer_deadline)
		arm_timer(w, deadline);
}

/*
 * poll_until says until when the worker polls instead of sleeping (0: it sleeps at
 * once): adaptive, for poll_us while a call or a request of ours is in flight, its
 * answer likely microseconds away; busy, up to the next timer, always.
 */
static uint64_t poll_until(const struct worker *w, uint64_t now)
{
	const struct cfg *c = &w->cfg->cfg;

	switch (c->poll) {
	case CFG_POLL_BUSY:
		return w->timer_deadline && w->timer_deadline > now ? w->timer_deadline
								    : now + NS_PER_MS;
	case CFG_POLL_ADAPTIVE:
		if (w->exec_count || w->calls_inflight)
			return now + (uint64_t)c->poll_us * 1000u;
		return 0;
	default:
		return 0;
	}
}

/* wait submits what the iteration queued and sleeps for a completion unless `busy`.
 * Returns false when the ring failed. */
static bool wait_for_work(struct worker *w, bool busy, uint64_t now)
{
	int r;

	uint64_t until = poll_until(w, now);

	if (!busy && until > now)
		busy = lanes_spin(w, until);
	r = busy ? io_uring_submit(&w->ring) : io_uring_submit_and_wait(&w->ring, 1);
	if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
		log_err("worker %u: io_uring_submit: %s", w->id, strerror(-r));
		return false;
	}
	lanes_disarm_all(w);
	return true;
}

/* pin_self puts this worker on its CPU of `cpus` (worker i on cpus[i % n]), if any. */
static void pin_self(struct worker *w)
{
	const struct cfg *c = &w->cfg->cfg;
	cpu_set_t set;
	int cpu, ret;

	w->cpu = -1;
	if (!c->num_cpus)
		return;
	cpu = c->cpus[w->id % c->num_cpus];
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	ret = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (ret)
		log_warn("worker %u: cpus: cannot run on CPU %d (%s); it runs anywhere", w->id, cpu,
			 strerror(ret));
	else
		w->cpu = cpu;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	pthread_setname_np(pthread_self(), w->name);
	pin_self(w);
	if (w->ring_disabled) {
		/* this thread becomes the ring's one issuer (SINGLE_ISSUER, ring_init) */
		/* liburing 2.3 (Debian 12) has no io_uring_enable_rings */
		if (syscall(__NR_io_uring_register, w->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
			    NULL, 0) < 0) {
			log_err("worker %u: enabling its io_uring: %s", w->id, strerror(errno));
			return NULL;
		}
		w->ring_disabled = false;
	}
	arm_all(w);
	while (!w->stop) {
		uint64_t now = now_ns();
		bool busy;

		w->now = now;
		reap(w, now);
		now = now_ns();
		w->now = now;
		housekeeping(w, now);
		busy = lanes_process_all(w, now);
		w->net->flush(w);
		/* Every phase that decrypts (reap, housekeeping, lanes) has run and handed its
		 * plaintext on (to the engine, the backend or an app's ring): wipe what is left
		 * in the scratch buffers, so none outlives this iteration nor a sleep. */
		sec_env_scrub(&w->sec);
		report_drained(w, now);
		if (w->stop) {
			io_uring_submit(&w->ring);
			break;
		}
		arm_deadline(w);
		if (!wait_for_work(w, busy, now))
			break;
	}
	snapshot_publish(w);
	return NULL;
}

/* ---- life ------------------------------------------------------------------------------------ */

/* ring_init sets up the io_uring and its provided receive buffers. */
static int ring_init(struct worker *w, char *err, size_t err_len)
{
	struct io_uring_params p = {0};
	int ret;

	/*
	 * DEFER_TASKRUN: completions are run by the worker when it asks for them, rather than
	 * by interrupting it; that needs SINGLE_ISSUER, and the ring is made here on the main
	 * thread, so it starts disabled and the worker enables it (and so becomes its one
	 * issuer) when it starts. TASKRUN_FLAG: a polling worker sees completions the kernel
	 * holds back for it.
	 */
	p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
		  IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
	ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	w->ring_disabled = ret == 0;
	if (ret < 0) {
		p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG; /* before 6.1 */
		ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	}
	if (ret < 0) {
		p.flags = 0; /* older kernels */
		ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
	}
	if (ret < 0) {
		w->ring.ring_fd = -1;
		set_err(err, err_len, "worker %u: io_uring_queue_init: %s", w->id, strerror(-ret));
		return ret;
	}
	/* Provided receive buffers: a buffer ring the kernel picks from for every datagram. */
	w->br_len = RX_BUFS * sizeof(struct io_uring_buf);
	w->br = mmap(NULL, w->br_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	w->rx_bufs = malloc((size_t)RX_BUFS * RX_BUF_SIZE);
	if (w->br == MAP_FAILED || !w->rx_bufs) {
		if (w->br == MAP_FAILED)
			w->br = NULL;
		set_err(err, err_len, "worker %u: out of memory for receive buffers", w->id);
		return -ENOMEM;
	}
	io_uring_buf_ring_init(w->br);
	struct io_uring_buf_reg reg = {
	    .ring_addr = (unsigned long)w->br, .ring_entries = RX_BUFS, .bgid = RX_BGID};
	ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (ret < 0) {
		set_err(err, err_len, "worker %u: io_uring_register_buf_ring: %s (kernel too old?)",
			w->id, strerror(-ret));
		return ret;
	}
	for (uint16_t i = 0; i < RX_BUFS; i++)
		io_uring_buf_ring_add(w->br, w->rx_bufs + (size_t)i * RX_BUF_SIZE, RX_BUF_SIZE, i,
				      io_uring_buf_ring_mask(RX_BUFS), i);
	io_uring_buf_ring_advance(w->br, RX_BUFS);
	return 0;
}

/* engine_init makes the worker's protocol engine from the config. */
static int engine_init(struct worker *w, char *err, size_t err_len)
{
	struct eng_config ec;

	eng_config_of(w, &ec);
	if (getrandom(&ec.hash_seed, sizeof(ec.hash_seed), 0) != sizeof(ec.hash_seed))
		ec.hash_seed = now_ns() ^ ((uint64_t)getpid() << 32);
	w->eng = eng_new(&ec, &worker_eng_ops, w);
	if (!w->eng) {
		set_err(err, err_len, "worker %u: engine: %s", w->id, strerror(errno));
		return -ENOMEM;
	}
	/* rids go on in sequence from a random start: an off-path sender who would forge an
	 * answer has to guess the client port and the rid together */
	uint16_t rid;
	if (getrandom(&rid, sizeof(rid), 0) == sizeof(rid))
		eng_set_next_rid(w->eng, rid);
	return 0;
}

/* tables_init allocates the tx pool and the call and exec tables. */
static int tables_init(struct worker *w, char *err, size_t err_len)
{
	w->tx = calloc(TX_SLOTS, sizeof(*w->tx));
	if (!w->tx || calls_init(w) < 0 || execs_init(w) < 0) {
		set_err(err, err_len, "worker %u: out of memory", w->id);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < TX_SLOTS; i++)
		w->tx_free[w->num_tx_free++] = TX_SLOTS - 1 - i;
	return 0;
}

struct worker *worker_new(unsigned id, struct cfg_ref *cfg, struct stek_set *stek,
			  struct replay *replay, struct replay *sealed_replay, int drained_efd,
			  char *err, size_t err_len)
{
	struct worker *w = calloc(1, sizeof(*w));
	int fd;

	if (!w) {
		set_err(err, err_len, "out of memory");
		return NULL;
	}
	w->id = id;
	w->cfg = cfg_ref_get(cfg);
	w->family = cfg->cfg.listen_addr.family == AF_INET6 ? AF_INET6 : AF_INET;
	w->net = &net_udp_ops;
	w->inbox_efd = -1;
	w->stek_ifd = -1;
	w->drained_efd = drained_efd;
	sec_env_init(&w->sec, stek ? stek_set_get(stek) : NULL, replay, sealed_replay,
		     cfg->cfg.sealed_window_ms);
	/* the strike registers are empty: what could predate this cannot be vouched for */
	w->sec.start_ms = unix_ms();
	sec_from_cfg(w);
	snprintf(w->name, sizeof(w->name), "r2p2d-w%u", id);
	pthread_mutex_init(&w->inbox_lock, NULL);
	pthread_mutex_init(&w->snap_lock, NULL);
	for (int i = 0; i < MAX_SOCKS; i++)
		w->socks[i].fd = -1;

	if (ring_init(w, err, err_len) < 0 || tables_init(w, err, err_len) < 0 ||
	    engine_init(w, err, err_len) < 0)
		goto fail;
	w->inbox_efd = eventfd(0, EFD_CLOEXEC);
	if (w->inbox_efd < 0) {
		set_err(err, err_len, "worker %u: eventfd: %s", id, strerror(errno));
		goto fail;
	}
	/* The client socket: ephemeral port, private to this worker, so responses come back here.
	 */
	fd = udp_open(w, 0, err, err_len);
	if (fd < 0 || (w->socks[0].fd = fd, udp_sync_services(w, err, err_len) < 0))
		goto fail;
	watch_stek(w);
	return w;
fail:
	worker_free(w);
	return NULL;
}

int worker_start(struct worker *w)
{
	int ret = pthread_create(&w->thread, NULL, worker_main, w);
	return -ret;
}

const uint8_t *ext_wrap(struct worker *w, uint32_t value, const uint8_t *data, size_t len)
{
	if (len + EXT_LEN > w->ext_cap) {
		size_t cap = len + EXT_LEN < 4096 ? 4096 : len + EXT_LEN;
		uint8_t *b = malloc(cap);

		if (!b)
			return NULL;
		ext_wipe(w, w->ext_cap);
		free(w->ext_buf);
		w->ext_buf = b;
		w->ext_cap = cap;
	}
	ext_write(w->ext_buf, value);
	if (len)
		memcpy(w->ext_buf + EXT_LEN, data, len);
	return w->ext_buf;
}

void ext_wipe(struct worker *w, size_t len)
{
	if (w->ext_buf)
		explicit_bzero(w->ext_buf, len + EXT_LEN > w->ext_cap ? w->ext_cap : len + EXT_LEN);
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	/* eng_free completes pending calls with -ECANCELED; apps are gone by now. */
	lanes_free(w);
	eng_free(w->eng); /* before the tls state: pending calls complete and free theirs */
	execs_free(w);
	udp_close_all(w);
	for (size_t i = 0; i < CFG_MAX_SERVICES; i++)
		sec_peer_cleanup(&w->peers[i]);
	neigh_free(w->neigh);
	stek_set_put(w->sec.stek);
	sec_env_cleanup(&w->sec);
	if (w->stek_ifd >= 0)
		close(w->stek_ifd);
	if (w->ring.ring_fd > 0)
		io_uring_queue_exit(&w->ring);
	if (w->br)
		munmap(w->br, w->br_len);
	if (w->inbox_efd >= 0)
		close(w->inbox_efd);
	while (w->inbox_head) {
		struct cmd *c = w->inbox_head;
		w->inbox_head = c->next;
		app_put(c->app);
		cfg_ref_put(c->cfg);
		cmd_done_put(c->done);
		free(c);
	}
	free(w->rx_bufs);
	ext_wipe(w, w->ext_cap);
	free(w->ext_buf);
	free(w->tx);
	calls_free(w);
	cfg_ref_put(w->cfg);
	pthread_mutex_destroy(&w->inbox_lock);
	pthread_mutex_destroy(&w->snap_lock);
	free(w);
}
