// SPDX-License-Identifier: MIT
/*
 * The counters a worker publishes for `r2p2ctl status`: copied into w->snap
 * under snap_lock every housekeeping round (100 ms) and at exit, so the main
 * thread reads one consistent copy per worker (worker_snapshot).
 */
#include "worker_int.h"

#include <stdio.h>

static void sum_services(const struct worker *w, struct worker_snap *s)
{
	unsigned n = 0;

	s->tls_server = w->tls_retired;
	for (int i = 1; i < MAX_SOCKS; i++) {
		const struct wsock *k = &w->socks[i];
		struct tls_stats t;
		struct sealed_stats ss;

		if (k->sec.tls) {
			tls_server_stats(k->sec.tls, &t);
			tls_stats_add(&s->tls_server, &t);
		}
		if (k->sec.sealed) {
			sealed_server_stats(k->sec.sealed, &ss);
			sealed_stats_add(&s->sealed, &ss);
		}
		if (k->fd < 0 || k->closing || n >= CFG_MAX_SERVICES)
			continue;
		s->svc[n].port = k->port;
		s->svc[n].requests = k->requests;
		s->svc[n].dropped_no_app = k->dropped_no_app;
		s->svc[n].dropped_wrong_mode = k->dropped_wrong_mode;
		s->svc[n].dropped_expired = k->dropped_expired;
		s->svc[n].dropped_bad_ext = k->dropped_bad_ext;
		n++;
	}
	s->num_svc = n;
}

static void sum_peers(const struct worker *w, struct worker_snap *s)
{
	for (size_t i = 0; i < CFG_MAX_SERVICES; i++) {
		const struct sec_peer *p = &w->peers[i];
		struct tls_stats t;

		if (!p->tls)
			continue;
		s->sealed_assocs += p->assoc_ready;
		if (p->assoc_ready && s->num_assoc < sizeof(s->assoc) / sizeof(s->assoc[0])) {
			snprintf(s->assoc[s->num_assoc].service, CFG_NAME_MAX, "%s", p->name);
			s->assoc[s->num_assoc].key_id = sec_peer_key_id(p);
			s->assoc[s->num_assoc].expiry_ms = p->assoc.expiry_ms;
			s->num_assoc++;
		}
		s->sealed_rebootstraps += p->rebootstraps;
		tls_client_stats(p->tls, &t);
		tls_stats_add(&s->tls_client, &t);
	}
}

static void sum_called(const struct worker *w, struct worker_snap *s)
{
	for (size_t i = 0; i < CALL_SVCS && s->num_called < CFG_MAX_SERVICES; i++) {
		const struct call_svc *c = &w->call_svcs[i];

		if (!c->name[0])
			continue;
		snprintf(s->called[s->num_called].name, CFG_NAME_MAX, "%s", c->name);
		s->called[s->num_called++].st = c->st;
	}
}

void snapshot_publish(struct worker *w)
{
	struct worker_snap s = {0};

	eng_get_stats(w->eng, &s.eng);
	s.apps = lanes_count(w);
	s.calls_inflight = w->calls_inflight;
	s.requests_executing = w->exec_count;
	w->net->stats(w, &s);
	s.app_errors = w->app_errors;
	s.app_ok = w->app_ok;
	s.app_failed = w->app_failed;
	s.calls_queued = w->calls_queued;
	s.calls_waited = w->calls_waited;
	s.queue_full = w->queue_full;
	s.cq_overflow_drops = w->cq_overflow_drops;
	sum_services(w, &s);
	sum_peers(w, &s);
	sum_called(w, &s);
	pthread_mutex_lock(&w->snap_lock);
	w->snap = s;
	pthread_mutex_unlock(&w->snap_lock);
}

void worker_snapshot(struct worker *w, struct worker_snap *out)
{
	pthread_mutex_lock(&w->snap_lock);
	*out = w->snap;
	pthread_mutex_unlock(&w->snap_lock);
}
