// SPDX-License-Identifier: MIT
/*
 * grpc-echo-server: the gRPC peer of r2p2-echo-server, for tools/bench.sh.
 *
 *   grpc-echo-server ADDR:PORT [--tls CERT KEY] [-i IDLE_S]
 *
 * Serves r2p2bench.Echo/Echo (tools/grpc/echo.proto) on the synchronous gRPC
 * server of Debian's grpc++ 1.51, insecure or with TLS server credentials from
 * CERT and KEY (PEM; tools/gen-certs.sh makes them). TLS version: grpc 1.51's
 * public API cannot pin one; its defaults allow TLS 1.2 to 1.3 and with OpenSSL 3
 * a client offering 1.3 gets 1.3 (tools/bench.sh checks the pair it measures).
 * Prints "grpc-echo-server ready on ADDR:PORT (insecure|tls)" once listening and
 * exits on SIGTERM/SIGINT or after IDLE_S seconds without a request (default 60).
 */
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <grpcpp/grpcpp.h>

#include "echo.grpc.pb.h"
#include "stats.h"

namespace
{

std::atomic<uint64_t> g_served{0};
std::atomic<uint64_t> g_last_ns{0};

class EchoService final : public r2p2bench::Echo::Service
{
	grpc::Status Echo(grpc::ServerContext *, const r2p2bench::EchoMsg *req,
			  r2p2bench::EchoMsg *resp) override
	{
		resp->set_data(req->data());
		g_served.fetch_add(1, std::memory_order_relaxed);
		g_last_ns.store(now_ns(), std::memory_order_relaxed);
		return grpc::Status::OK;
	}
};

[[noreturn]] void usage()
{
	std::fprintf(stderr, "usage: grpc-echo-server ADDR:PORT [--tls CERT KEY] [-i IDLE_S]\n");
	std::exit(2);
}

// read_file returns the contents of `path` in `out`; false (and a message) if unreadable.
bool read_file(const char *path, std::string *out)
{
	std::ifstream f(path, std::ios::binary);
	std::ostringstream ss;

	if (!f) {
		std::fprintf(stderr, "grpc-echo-server: cannot read %s: %s\n", path,
			     std::strerror(errno));
		return false;
	}
	ss << f.rdbuf();
	*out = ss.str();
	return true;
}

} // namespace

int main(int argc, char **argv)
{
	const char *addr = nullptr, *cert = nullptr, *key = nullptr;
	unsigned long idle_s = 60;

	for (int i = 1; i < argc; i++) {
		if (!std::strcmp(argv[i], "--tls") && i + 2 < argc) {
			cert = argv[++i];
			key = argv[++i];
		} else if (!std::strcmp(argv[i], "-i") && i + 1 < argc) {
			char *end;

			idle_s = std::strtoul(argv[++i], &end, 10);
			if (*end || idle_s == 0 || idle_s > 86400)
				usage();
		} else if (argv[i][0] != '-' && !addr) {
			addr = argv[i];
		} else {
			usage();
		}
	}
	if (!addr)
		usage();

	std::shared_ptr<grpc::ServerCredentials> creds;
	if (cert) {
		grpc::SslServerCredentialsOptions opts;
		grpc::SslServerCredentialsOptions::PemKeyCertPair pair;

		if (!read_file(cert, &pair.cert_chain) || !read_file(key, &pair.private_key))
			return 1;
		opts.pem_key_cert_pairs.push_back(pair);
		creds = grpc::SslServerCredentials(opts);
	} else {
		creds = grpc::InsecureServerCredentials();
	}

	// Signals are taken by sigtimedwait below: block them before gRPC starts its threads.
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

	EchoService service;
	grpc::ServerBuilder builder;
	int port = 0;

	builder.AddListeningPort(addr, creds, &port);
	builder.RegisterService(&service);
	std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
	if (!server || port == 0) {
		std::fprintf(stderr, "grpc-echo-server: cannot listen on %s\n", addr);
		return 1;
	}
	std::printf("grpc-echo-server ready on %s (%s)\n", addr, cert ? "tls" : "insecure");
	std::fflush(stdout);

	g_last_ns.store(now_ns());
	for (;;) {
		struct timespec tick = {1, 0};
		int sig = sigtimedwait(&sigs, nullptr, &tick);

		uint64_t last = g_last_ns.load(); // before now_ns(): a later store is no idle time

		if (sig > 0)
			break;
		if (now_ns() - last >= idle_s * 1000000000ull) {
			std::fprintf(stderr, "grpc-echo-server: idle for %lu s, exiting\n", idle_s);
			break;
		}
	}
	server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
	server->Wait();
	std::fprintf(stderr, "grpc-echo-server: served %llu requests\n",
		     (unsigned long long)g_served.load());
	return 0;
}
