/* SPDX-License-Identifier: MIT */
/*
 * Latency statistics shared by r2p2-bench and udp-pingpong, so that both print
 * the same numbers the same way: every sample is kept (CLOCK_MONOTONIC, ns),
 * sorted once at the end, and percentiles are nearest-rank.
 *
 * Header-only on purpose: the tools are single-file programs. Also valid C++, so
 * that the gRPC peer (tools/grpc/grpc_echo_client.cc) prints the very same lines.
 */
#ifndef R2P2_TOOLS_STATS_H
#define R2P2_TOOLS_STATS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct lat_stats {
	uint64_t *ns;	       /* samples, in nanoseconds */
	size_t num;	       /* samples stored */
	size_t cap;	       /* capacity of `ns` */
	uint64_t requests;     /* requests issued (measured phase) */
	uint64_t errors;       /* failed, other than by timeout */
	uint64_t timeouts;     /* failed by timeout */
	uint64_t max_inflight; /* largest number of requests outstanding at once */
	double elapsed_s;      /* wall time of the measured phase */
};

/* now_ns returns CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* stats_init prepares `s` for up to `cap` samples (more grow the array). Returns 0 or -ENOMEM. */
static inline int stats_init(struct lat_stats *s, size_t cap)
{
	memset(s, 0, sizeof(*s));
	if (cap == 0)
		cap = 1024;
	s->ns = (uint64_t *)malloc(cap * sizeof(*s->ns));
	if (!s->ns)
		return -ENOMEM;
	s->cap = cap;
	return 0;
}

static inline void stats_cleanup(struct lat_stats *s)
{
	free(s->ns);
	s->ns = NULL;
}

/* stats_add records one successful request's latency. Drops the sample if memory runs out. */
static inline void stats_add(struct lat_stats *s, uint64_t ns)
{
	if (s->num == s->cap) {
		uint64_t *n = (uint64_t *)realloc(s->ns, 2 * s->cap * sizeof(*s->ns));

		if (!n)
			return;
		s->ns = n;
		s->cap *= 2;
	}
	s->ns[s->num++] = ns;
}

/*
 * stats_write_samples writes every sample recorded so far to `path`, one latency in
 * microseconds per line, in the order recorded (call it before stats_report, which
 * sorts). "-" is stdout. Returns 0 or a negative errno.
 */
static inline int stats_write_samples(const struct lat_stats *s, const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
	int err = 0;

	if (!f)
		return -errno;
	for (size_t i = 0; i < s->num; i++)
		if (fprintf(f, "%.3f\n", (double)s->ns[i] / 1000.0) < 0) {
			err = -EIO;
			break;
		}
	if (fflush(f))
		err = -errno;
	if (f != stdout && fclose(f) && !err)
		err = -errno;
	return err;
}

static inline int stats_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* stats_pct_us returns the nearest-rank percentile `p` (0..100] in microseconds; needs sorted
 * samples. */
static inline double stats_pct_us(const struct lat_stats *s, double p)
{
	size_t rank;

	if (s->num == 0)
		return 0;
	rank = (size_t)((p / 100.0) * (double)s->num + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > s->num)
		rank = s->num;
	return (double)s->ns[rank - 1] / 1000.0;
}

/* stats_cpu_us returns the CPU (user + system) this process has used so far, in us. */
static inline double stats_cpu_us(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return -1;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/*
 * stats_report sorts the samples and prints the human summary to `out`, and,
 * when `json`, one JSON object line (with "cpu_us": this process's CPU over its
 * whole run, warm-up included). `tool` and `extra_json` (already-formatted
 * "key":value pairs, or "") describe the run.
 */
static inline void stats_report(struct lat_stats *s, FILE *out, const char *tool, size_t size,
				unsigned concurrency, int json, const char *extra_json)
{
	double p50, p90, p99, p999, max, mean = 0, tput;
	uint64_t ok = s->num;

	qsort(s->ns, s->num, sizeof(*s->ns), stats_cmp_u64);
	p50 = stats_pct_us(s, 50);
	p90 = stats_pct_us(s, 90);
	p99 = stats_pct_us(s, 99);
	p999 = stats_pct_us(s, 99.9);
	max = s->num ? (double)s->ns[s->num - 1] / 1000.0 : 0;
	for (size_t i = 0; i < s->num; i++)
		mean += (double)s->ns[i];
	if (s->num)
		mean = mean / (double)s->num / 1000.0;
	tput = s->elapsed_s > 0 ? (double)ok / s->elapsed_s : 0;

	fprintf(out, "%s: size %zu B, concurrency %u\n", tool, size, concurrency);
	fprintf(out, "  requests %llu  ok %llu  errors %llu  timeouts %llu  max in flight %llu\n",
		(unsigned long long)s->requests, (unsigned long long)ok,
		(unsigned long long)s->errors, (unsigned long long)s->timeouts,
		(unsigned long long)s->max_inflight);
	fprintf(out,
		"  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f)\n",
		p50, p90, p99, p999, max, mean);
	fprintf(out, "  throughput %.0f req/s over %.3f s\n", tput, s->elapsed_s);
	if (json)
		fprintf(out,
			"{\"tool\":\"%s\",\"size\":%zu,\"concurrency\":%u,\"requests\":%llu,"
			"\"ok\":%llu,\"errors\":%llu,\"timeouts\":%llu,\"max_inflight\":%llu,"
			"\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,"
			"\"max_us\":%.2f,\"mean_us\":%.2f,\"throughput_rps\":%.1f,"
			"\"elapsed_s\":%.4f,\"cpu_us\":%.0f%s%s}\n",
			tool, size, concurrency, (unsigned long long)s->requests,
			(unsigned long long)ok, (unsigned long long)s->errors,
			(unsigned long long)s->timeouts, (unsigned long long)s->max_inflight, p50,
			p90, p99, p999, max, mean, tput, s->elapsed_s, stats_cpu_us(),
			extra_json && *extra_json ? "," : "", extra_json ? extra_json : "");
	fflush(out);
}

/*
 * tool_parse_num parses `s` as an unsigned number (decimal, or 0x hex) no larger than
 * `max`; on anything else it prints "PROG: bad WHAT 'S'" and exits with status 2.
 */
static inline unsigned long tool_parse_num(const char *prog, const char *s, const char *what,
					   unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > max) {
		fprintf(stderr, "%s: bad %s '%s'\n", prog, what, s);
		exit(2);
	}
	return v;
}

#endif /* R2P2_TOOLS_STATS_H */
