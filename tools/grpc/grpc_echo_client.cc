// SPDX-License-Identifier: MIT
/*
 * grpc-echo-client: the gRPC peer of r2p2-bench, for tools/bench.sh.
 *
 *   grpc-echo-client ADDR:PORT [-S SIZE] [-N COUNT] [-w WARMUP] [-c CONCURRENCY]
 *                    [-t TIMEOUT_MS] [-d DURATION_S] [--rate R] [--tls CA SERVERNAME]
 *                    [--samples FILE] [--json]
 *
 * One persistent channel (connected, and with --tls handshaken, before the first
 * measured call). Sequential (the default): blocking unary calls one after the
 * other, each timed from creating its ClientContext to its return. With -c N > 1:
 * N calls kept outstanding on one CompletionQueue (closed loop). With --rate R:
 * open loop as in r2p2-bench: call i is due at start + i/R s, at most N
 * outstanding, latency from the due time, and the same waiting rule (block only
 * when the next call is due in over 2.5 ms, else poll and yield: one busy CPU).
 * --tls: grpc::SslCredentials trusting CA, with the target name overridden to
 * SERVERNAME (grpc.ssl_target_name_override). grpc 1.51's public API cannot pin
 * the TLS version: it allows 1.2 to 1.3 and OpenSSL 3 negotiates 1.3 with a 1.3
 * server; the summary says so. Output: tools/stats.h's summary and --json line
 * (the fields of r2p2-bench); --samples writes every measured latency (us, one per
 * line, in completion order). Exit status 0 only when every measured call
 * succeeded and echoed its request.
 */
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sched.h>
#include <sstream>
#include <string>

#include <grpcpp/grpcpp.h>

#include "echo.grpc.pb.h"
#include "stats.h"

namespace
{

volatile sig_atomic_t g_stop;

void on_signal(int)
{
	g_stop = 1;
}

[[noreturn]] void usage()
{
	std::fprintf(stderr, "usage: grpc-echo-client ADDR:PORT [-S SIZE] [-N COUNT] [-w WARMUP] "
			     "[-c CONCURRENCY]\n"
			     "                        [-t TIMEOUT_MS] [-d DURATION_S] [--rate R] "
			     "[--tls CA SERVERNAME]\n"
			     "                        [--samples FILE] [--json]\n");
	std::exit(2);
}

unsigned long parse_num(const char *s, const char *what, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = std::strtoul(s, &end, 0);
	if (errno || end == s || *end || v > max) {
		std::fprintf(stderr, "grpc-echo-client: bad %s '%s'\n", what, s);
		std::exit(2);
	}
	return v;
}

// due_ns returns when open-loop call `i` (counting warmup calls) is due.
uint64_t due_ns(uint64_t start, unsigned long i, unsigned long rate)
{
	return start + (uint64_t)((double)i * 1e9 / (double)rate);
}

gpr_timespec mono_in_ns(uint64_t ns)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			    gpr_time_from_nanos((int64_t)ns, GPR_TIMESPAN));
}

struct Options {
	std::string target;
	const char *ca = nullptr, *servername = nullptr, *samples = nullptr;
	unsigned long size = 4, count = 10000, warmup = 100, conc = 1, timeout_ms = 1000,
		      duration_s = 60, rate = 0;
	bool json = false;
};

Options parse_args(int argc, char **argv)
{
	Options o;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : nullptr;

		if (!std::strcmp(a, "--json")) {
			o.json = true;
			continue;
		}
		if (!std::strcmp(a, "--tls")) {
			if (i + 2 >= argc)
				usage();
			o.ca = argv[i + 1];
			o.servername = argv[i + 2];
			i += 2;
			continue;
		}
		if (a[0] != '-') {
			if (!o.target.empty())
				usage();
			o.target = a;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!std::strcmp(a, "-S"))
			o.size = parse_num(v, "size", 1ul << 30);
		else if (!std::strcmp(a, "-N"))
			o.count = parse_num(v, "count", 1ul << 34);
		else if (!std::strcmp(a, "-w"))
			o.warmup = parse_num(v, "warmup", 1ul << 30);
		else if (!std::strcmp(a, "-c"))
			o.conc = parse_num(v, "concurrency", 65536);
		else if (!std::strcmp(a, "-t"))
			o.timeout_ms = parse_num(v, "timeout", 3600000);
		else if (!std::strcmp(a, "-d"))
			o.duration_s = parse_num(v, "duration", 86400);
		else if (!std::strcmp(a, "--rate"))
			o.rate = parse_num(v, "rate", 100000000);
		else if (!std::strcmp(a, "--samples"))
			o.samples = v;
		else
			usage();
	}
	if (o.target.empty() || o.count == 0 || o.conc == 0 || o.duration_s == 0)
		usage();
	return o;
}

bool read_file(const char *path, std::string *out)
{
	std::ifstream f(path, std::ios::binary);
	std::ostringstream ss;

	if (!f) {
		std::fprintf(stderr, "grpc-echo-client: cannot read %s: %s\n", path,
			     std::strerror(errno));
		return false;
	}
	ss << f.rdbuf();
	*out = ss.str();
	return true;
}

// The run: what both loops share.
struct Run {
	const Options &o;
	r2p2bench::Echo::Stub &stub;
	r2p2bench::EchoMsg req;
	lat_stats st;
	uint64_t t0 = 0, t_last = 0, max_lag_ns = 0;
	unsigned long shown = 0;

	Run(const Options &opts, r2p2bench::Echo::Stub &s) : o(opts), stub(s)
	{
	}

	void set_deadline(grpc::ClientContext *ctx) const
	{
		if (o.timeout_ms)
			ctx->set_deadline(std::chrono::system_clock::now() +
					  std::chrono::milliseconds(o.timeout_ms));
	}

	// account records the outcome of one measured call that started at `start_ns`.
	void account(const grpc::Status &status, const r2p2bench::EchoMsg &resp, uint64_t start_ns,
		     uint64_t done_ns)
	{
		st.requests++;
		t_last = done_ns;
		if (status.ok() && resp.data() == req.data()) {
			stats_add(&st, done_ns - start_ns);
		} else if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
			st.timeouts++;
		} else {
			st.errors++;
			if (shown++ < 5)
				std::fprintf(stderr, "grpc-echo-client: call failed: %s\n",
					     status.ok() ? "response differs from request"
							 : status.error_message().c_str());
		}
	}

	// sequential: blocking unary calls, one at a time.
	void sequential()
	{
		const unsigned long total = o.warmup + o.count;
		const uint64_t end = now_ns() + o.duration_s * 1000000000ull;

		st.max_inflight = 1;
		for (unsigned long i = 0; i < total && !g_stop && now_ns() < end; i++) {
			uint64_t t = now_ns();
			r2p2bench::EchoMsg resp;
			grpc::Status status;
			{
				grpc::ClientContext ctx;

				set_deadline(&ctx);
				status = stub.Echo(&ctx, req, &resp);
			}
			uint64_t done = now_ns();

			if (i < o.warmup)
				continue;
			if (!t0)
				t0 = t;
			account(status, resp, t, done);
		}
	}

	struct Call {
		grpc::ClientContext ctx;
		r2p2bench::EchoMsg resp;
		grpc::Status status;
		std::unique_ptr<grpc::ClientAsyncResponseReader<r2p2bench::EchoMsg>> rpc;
		uint64_t start_ns = 0;
		bool measured = false;
	};

	// async: up to o.conc calls outstanding on one CompletionQueue; closed or open loop.
	void async()
	{
		const unsigned long total = o.warmup + o.count;
		const uint64_t start = now_ns(), issue_end = start + o.duration_s * 1000000000ull;
		unsigned long issued = 0, inflight = 0;
		grpc::CompletionQueue cq;

		for (;;) {
			bool issuing = !g_stop && issued < total && now_ns() < issue_end;

			while (issuing && inflight < o.conc && issued < total) {
				uint64_t t = now_ns(),
					 due = o.rate ? due_ns(start, issued, o.rate) : t;
				Call *c;

				if (due > t)
					break;
				c = new Call;
				c->start_ns = due;
				c->measured = issued >= o.warmup;
				set_deadline(&c->ctx);
				c->rpc = stub.AsyncEcho(&c->ctx, req, &cq);
				c->rpc->Finish(&c->resp, &c->status, c);
				if (c->measured && !t0)
					t0 = due;
				if (c->measured && t - due > max_lag_ns)
					max_lag_ns = t - due;
				issued++;
				inflight++;
				if (c->measured && inflight > st.max_inflight)
					st.max_inflight = inflight;
			}
			issuing = !g_stop && issued < total && now_ns() < issue_end;
			if (!issuing && inflight == 0)
				break;

			gpr_timespec deadline = mono_in_ns(100000000); // a completion is due
			if (issuing && o.rate && inflight < o.conc) {
				// The same rule as r2p2-bench: block only if the next call is far.
				uint64_t due = due_ns(start, issued, o.rate), t = now_ns();

				deadline = due > t + 2500000 ? mono_in_ns(due - t - 1500000)
							     : gpr_time_0(GPR_CLOCK_MONOTONIC);
			}
			void *tag;
			bool ok;
			grpc::CompletionQueue::NextStatus r = cq.AsyncNext(&tag, &ok, deadline);

			if (r == grpc::CompletionQueue::SHUTDOWN)
				break;
			if (r != grpc::CompletionQueue::GOT_EVENT) {
				if (gpr_time_cmp(deadline, gpr_time_0(GPR_CLOCK_MONOTONIC)) == 0)
					sched_yield(); // as r2p2-bench: others first
				continue;
			}
			uint64_t done = now_ns();
			std::unique_ptr<Call> c(static_cast<Call *>(tag));

			inflight--;
			if (c->measured)
				account(ok ? c->status
					   : grpc::Status(grpc::StatusCode::INTERNAL,
							  "completion not ok"),
					c->resp, c->start_ns, done);
		}
		cq.Shutdown();
		void *tag;
		bool ok;
		while (cq.Next(&tag, &ok))
			delete static_cast<Call *>(tag);
		if (inflight) {
			st.requests += inflight;
			st.errors += inflight;
		}
	}
};

} // namespace

int main(int argc, char **argv)
{
	Options o = parse_args(argc, argv);
	struct sigaction sa = {};

	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, nullptr);
	sigaction(SIGINT, &sa, nullptr);

	std::shared_ptr<grpc::ChannelCredentials> creds;
	grpc::ChannelArguments args;

	args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0); // straight to ADDR:PORT, whatever the env says
	if (o.ca) {
		grpc::SslCredentialsOptions opts;

		if (!read_file(o.ca, &opts.pem_root_certs))
			return 1;
		creds = grpc::SslCredentials(opts);
		args.SetSslTargetNameOverride(o.servername);
	} else {
		creds = grpc::InsecureChannelCredentials();
	}
	std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(o.target, creds, args);

	if (!channel->WaitForConnected(mono_in_ns(10000000000ull))) {
		std::fprintf(stderr, "grpc-echo-client: cannot connect to %s within 10 s%s\n",
			     o.target.c_str(), o.ca ? " (TLS handshake included)" : "");
		return 1;
	}
	std::unique_ptr<r2p2bench::Echo::Stub> stub = r2p2bench::Echo::NewStub(channel);
	Run run(o, *stub);
	std::string payload(o.size, '\0');

	for (size_t i = 0; i < o.size; i++)
		payload[i] = (char)(uint8_t)((i * 2654435761u) >> 13);
	run.req.set_data(payload);
	if (stats_init(&run.st, o.count)) {
		std::fprintf(stderr, "grpc-echo-client: out of memory\n");
		return 1;
	}

	// One unmeasured call that also says what protects the channel.
	std::string security = "insecure";
	{
		grpc::ClientContext ctx;
		r2p2bench::EchoMsg resp;
		grpc::Status s;

		run.set_deadline(&ctx);
		s = stub->Echo(&ctx, run.req, &resp);
		if (!s.ok()) {
			std::fprintf(stderr, "grpc-echo-client: first call to %s failed: %s\n",
				     o.target.c_str(), s.error_message().c_str());
			return 1;
		}
		std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
		if (auth) {
			for (const auto &v : auth->FindPropertyValues("transport_security_type"))
				security = std::string(v.data(), v.size());
		}
	}

	if (o.conc == 1 && !o.rate)
		run.sequential();
	else
		run.async();
	run.st.elapsed_s = run.t0 && run.t_last > run.t0 ? (double)(run.t_last - run.t0) / 1e9 : 0;

	int rc = run.st.num > 0 && run.st.num == run.st.requests ? 0 : 1;

	if (o.samples) {
		int err = stats_write_samples(&run.st, o.samples);

		if (err) {
			std::fprintf(stderr, "grpc-echo-client: %s: %s\n", o.samples,
				     std::strerror(-err));
			rc = 1;
		}
	}
	char extra[512];
	const char *tls_version = o.ca ? "not pinned (grpc 1.51 API): 1.2-1.3 allowed" : "none";
	std::snprintf(extra, sizeof(extra),
		      "\"target\":\"%s\",\"security\":\"%s\",\"tls_version\":\"%s\","
		      "\"grpc_version\":\"%s\",\"warmup\":%lu,\"rate_rps\":%lu,"
		      "\"max_send_lag_us\":%.1f",
		      o.target.c_str(), security.c_str(), tls_version, grpc::Version().c_str(),
		      o.warmup, o.rate, (double)run.max_lag_ns / 1000.0);
	stats_report(&run.st, stdout, "grpc-echo-client", o.size, (unsigned)o.conc, o.json, extra);
	std::printf("  channel: grpc %s, %s", grpc::Version().c_str(), security.c_str());
	if (o.ca)
		std::printf(" (SslCredentials, target name %s; TLS version not selectable through "
			    "grpc 1.51's API: 1.2-1.3 allowed, the highest common one is used)",
			    o.servername);
	std::printf("\n");
	if (o.rate)
		std::printf(
		    "  open loop: offered %lu req/s, latest send %.1f us after its due time\n",
		    o.rate, (double)run.max_lag_ns / 1000.0);
	stats_cleanup(&run.st);
	return rc;
}
