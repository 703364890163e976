// SPDX-License-Identifier: MIT
/*
 * The apps' lanes on this worker: each attached app has one shared-memory lane
 * per worker (lane.c). Its doorbell is an eventfd read on the worker's ring; its
 * submissions become calls (calls.c) and responses (execs.c). An app that breaks
 * the ring ABI is detached; its requests are DROPped and its calls orphaned.
 */
#include "worker_int.h"

#include <sched.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "log.h"

static bool wapp_live(const struct wapp *wa)
{
	return wa->app && !wa->removing;
}

static void arm_doorbell(struct worker *w, uint32_t slot)
{
	struct wapp *wa = &w->wapps[slot];
	struct io_uring_sqe *sqe = get_sqe(w);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, wa->lane.sq_efd, &wa->efd_val, sizeof(wa->efd_val), 0);
	io_uring_sqe_set_data64(sqe, ud_make(UD_DOORBELL, slot, wa->gen));
	wa->read_armed = true;
}

void lanes_add(struct worker *w, struct app *a)
{
	for (uint32_t i = 0; i < MAX_WAPPS; i++) {
		struct wapp *wa = &w->wapps[i];
		if (wa->app || wa->removing)
			continue;
		if (lane_init(&wa->lane, a->map, &a->hdr, w->id, a->sq_efd[w->id], a->cq_efd[w->id],
			      CQ_OVF_MAX) < 0)
			break;
		wa->app = a;
		wa->gen++;
		if (w->wapp_hi <= i)
			w->wapp_hi = i + 1;
		wa->calls_inflight = 0;
		/* tells the app which CPU this lane's worker runs on (libr2p2 prefers its own) */
		r2p2_store_release(&wa->lane.ctrl->worker_cpu,
				   w->cpu >= 0 ? (uint32_t)w->cpu + 1 : 0);
		arm_doorbell(w, i);
		return;
	}
	log_warn("worker %u: no room for app %llu", w->id, (unsigned long long)a->id);
	app_put(a);
}

/* release_slot frees the slot of `wa` (and lowers the hot loops' bound past free slots). */
static void release_slot(struct worker *w, struct wapp *wa)
{
	lane_cleanup(&wa->lane);
	app_put(wa->app);
	wa->app = NULL;
	wa->removing = false;
	while (w->wapp_hi && !w->wapps[w->wapp_hi - 1].app && !w->wapps[w->wapp_hi - 1].removing)
		w->wapp_hi--;
}

struct wapp_ref {
	uint32_t slot, gen;
};

static bool held_by(const struct exec_req *e, const void *arg)
{
	const struct wapp_ref *r = arg;
	return e->wapp == r->slot && e->wapp_gen == r->gen;
}

/* drop_wapp forgets an app on this worker: its unanswered requests are DROPped, its calls orphaned.
 */
static void drop_wapp(struct worker *w, uint32_t slot)
{
	struct wapp *wa = &w->wapps[slot];
	struct wapp_ref ref = {.slot = slot, .gen = wa->gen};

	if (!wapp_live(wa))
		return;
	exec_drop_where(w, held_by, &ref, true, now_ns());
	wa->removing = true;
	wa->gen++; /* completions for its calls now find a stale generation */
	if (wa->read_armed)
		cancel_op(w, ud_make(UD_DOORBELL, slot, wa->gen - 1));
	else
		release_slot(w, wa);
}

void lanes_remove_app(struct worker *w, const struct app *a)
{
	for (uint32_t i = 0; i < MAX_WAPPS; i++)
		if (w->wapps[i].app == a)
			drop_wapp(w, i);
}

/* take_sqe handles one app submission. */
static void take_sqe(struct worker *w, uint32_t slot, int ret, const struct r2p2_sqe *sqe,
		     const uint8_t *payload, uint64_t now)
{
	struct wapp *wa = &w->wapps[slot];

	if (ret == -EINVAL) {
		w->app_errors++;
		if (sqe->op == R2P2_SQ_CALL)
			call_fail(wa, sqe->user_data, -EINVAL);
	} else if (sqe->op == R2P2_SQ_CALL) {
		call_start(w, slot, sqe, payload, now);
	} else if (sqe->op == R2P2_SQ_RESPOND) {
		exec_respond(w, slot, sqe, payload, now);
	} else if (sqe->op == R2P2_SQ_CANCEL) {
		call_cancel(w, slot, sqe->user_data);
	}
}

static void process_lane(struct worker *w, uint32_t slot, uint64_t now)
{
	struct wapp *wa = &w->wapps[slot];
	struct r2p2_sqe sqe;
	const uint8_t *payload;
	int n = 0, ret;

	if (!wapp_live(wa))
		return;
	lane_flush(&wa->lane);
	/* Back-pressure: calls in flight are bounded per lane so their completions always fit. */
	while (n < 256 && wa->calls_inflight < MAX_CALLS_PER_LANE) {
		ret = lane_next_sqe(&wa->lane, &sqe, &payload);
		if (ret == 0)
			break;
		n++;
		if (ret < 0 && ret != -EINVAL)
			break;
		take_sqe(w, slot, ret, &sqe, payload, now);
	}
	if (n)
		lane_consume(&wa->lane);
	if (wa->lane.broken) {
		w->app_errors++;
		log_warn("worker %u: app %llu (pid %d) broke the ring ABI; detaching it", w->id,
			 (unsigned long long)wa->app->id, (int)wa->app->pid);
		/* Close the control connection so the main thread sees the app gone. */
		shutdown(wa->app->conn_fd, SHUT_RDWR);
		drop_wapp(w, slot);
	}
}

void lanes_handle_doorbell(struct worker *w, struct io_uring_cqe *cqe, uint64_t now)
{
	uint32_t slot = ud_idx(cqe->user_data);
	struct wapp *wa;

	if (slot >= MAX_WAPPS)
		return;
	wa = &w->wapps[slot];
	wa->read_armed = false;
	if (wa->removing) {
		release_slot(w, wa);
		return;
	}
	if (!wa->app || ud_gen(cqe->user_data) != (wa->gen & 0xFFFFFF))
		return;
	if (cqe->res < 0 && cqe->res != -EINTR && cqe->res != -EAGAIN) {
		log_warn("worker %u: doorbell of app %llu: %s", w->id,
			 (unsigned long long)wa->app->id, strerror(-cqe->res));
		drop_wapp(w, slot);
		return;
	}
	process_lane(w, slot, now);
	if (wapp_live(wa))
		arm_doorbell(w, slot);
}

/*
 * lanes_process_all takes what every app submitted, rings their doorbells for
 * what we posted, and asks for ours. Returns true when an app submitted more in
 * the meantime (the loop must not sleep).
 */
bool lanes_process_all(struct worker *w, uint64_t now)
{
	bool busy = false;

	for (uint32_t i = 0; i < w->wapp_hi; i++) {
		struct wapp *wa = &w->wapps[i];
		if (!wapp_live(wa))
			continue;
		process_lane(w, i, now);
		if (!wapp_live(wa))
			continue;
		lane_flush(&wa->lane);
		lane_notify(&wa->lane);
		if (lane_arm_wakeup(&wa->lane)) {
			lane_disarm_wakeup(&wa->lane);
			busy = true;
		}
	}
	return busy;
}

void lanes_disarm_all(struct worker *w)
{
	for (uint32_t i = 0; i < w->wapp_hi; i++)
		if (wapp_live(&w->wapps[i]))
			lane_disarm_wakeup(&w->wapps[i].lane);
}

static bool any_submitted(struct worker *w)
{
	for (uint32_t i = 0; i < w->wapp_hi; i++)
		if (wapp_live(&w->wapps[i]) && lane_sq_pending(&w->wapps[i].lane))
			return true;
	return false;
}

/*
 * ring_has_work says whether the ring holds completions, or has completions the
 * kernel is waiting to post (IORING_SQ_TASKRUN, with IORING_SETUP_TASKRUN_FLAG:
 * under COOP_TASKRUN a datagram's completion waits for our next system call).
 */
static bool ring_has_work(struct io_uring *ring)
{
	return io_uring_cq_ready(ring) ||
	       (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_TASKRUN);
}

/*
 * lanes_spin: a request or call of ours is in flight, and its answer often comes
 * back within microseconds. Rather than sleep and pay a wakeup, watch the lanes and
 * the ring until `until` (with the doorbells off, so apps make no system call
 * either). Returns true when there is work (the loop must not sleep).
 */
bool lanes_spin(struct worker *w, uint64_t until)
{
	bool work = false;

	io_uring_submit(&w->ring); /* what this iteration queued leaves now */
	lanes_disarm_all(w);
	do {
		work = any_submitted(w) || ring_has_work(&w->ring);
		if (!work)
			sched_yield(); /* a party sharing this CPU (an app, the peer daemon) runs */
	} while (!work && now_ns() < until);
	/* Doorbells back on before sleeping; anything that slipped in is seen here. */
	for (uint32_t i = 0; i < w->wapp_hi; i++) {
		struct wapp *wa = &w->wapps[i];
		if (wapp_live(wa) && lane_arm_wakeup(&wa->lane))
			work = true;
	}
	return work;
}

unsigned lanes_count(const struct worker *w)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < w->wapp_hi; i++)
		n += wapp_live(&w->wapps[i]);
	return n;
}

/* lanes_free lets go of every app (at exit: the apps are gone by now). */
void lanes_free(struct worker *w)
{
	for (uint32_t i = 0; i < MAX_WAPPS; i++)
		if (w->wapps[i].app)
			release_slot(w, &w->wapps[i]);
}
