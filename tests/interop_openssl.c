// SPDX-License-Identifier: MIT
/*
 * interop_openssl: an OpenSSL 3 client, written from docs/PROTOCOL.md ("tls mode"),
 * against our BoringSSL server (daemon/security/tls.c). Proves a full handshake as two
 * exchanges (CLIENT_FIRST, SERVER_HANDSHAKE, CLIENT_SECOND, SERVER_FINAL) with
 * chain and name verification, that the ticket allows early data, a resumed 0-RTT
 * exchange in one round trip with the request accepted as early data, a resumed
 * 1-RTT exchange with a multi-record request and response, that a replayed 0-RTT
 * first flight only gets a handshake answer, and that a wrong SNI gets ERROR.
 *
 * OpenSSL and BoringSSL export the same symbols and must never share a process
 * (DESIGN.md), so this executable links OpenSSL 3 only and runs the server as a
 * child process: tests/tls_echo_server.c, fed through pipes with 4-byte big-endian
 * length-prefixed payloads. The R2P2/UDP layer is not involved here.
 *
 * Usage: interop_openssl [PATH-TO-tls_echo_server]  (default: next to this binary)
 * Output is TAP-like ("ok N name" / "not ok N name"); exit 0 (all passed), 1, or 77
 * (skipped: no openssl CLI for tools/gen-certs.sh).
 */
#include <openssl/opensslv.h>
#ifdef OPENSSL_IS_BORINGSSL
#error "interop_openssl must be built against OpenSSL 3, never BoringSSL"
#endif
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "OpenSSL 3 is needed"
#endif

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef R2P2_SOURCE_DIR
#error "R2P2_SOURCE_DIR must name the source tree (tests/CMakeLists.txt)"
#endif

/* docs/PROTOCOL.md, "tls mode": deliberately not taken from daemon/security/tls.h */
#define FRAME_VERSION 1
#define FRAME_HDR_LEN 10
enum {
	KIND_CLIENT_FIRST = 1,
	KIND_SERVER_FINAL = 2,
	KIND_SERVER_HANDSHAKE = 3,
	KIND_CLIENT_SECOND = 4,
	KIND_ERROR = 5,
};
#define MSG_PREFIX_LEN 4
#define BIND_LEN 18	     /* 0-RTT data starts with the server's address and port */
#define EARLY_DATA_MAX 14336 /* what BoringSSL writes into its tickets */

#define SVC "echo.svc"

struct buf {
	uint8_t *data;
	size_t len, cap;
};

struct frame {
	int kind;
	uint64_t id;
	const uint8_t *tls;
	size_t tls_len;
};

static char dir[256], ca[320], crt[320], key[320], stek[320];
static FILE *to_srv, *from_srv;
static pid_t srv_pid = -1;
static SSL_CTX *ctx;
static SSL_SESSION *ticket; /* the newest session the server gave us */
static int num_tickets;
static struct buf first_0rtt; /* the 0-RTT CLIENT_FIRST, replayed later */

/* ---- reporting ------------------------------------------------------------------- */

static int test_no, failed;

__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

static int print_err(const char *str, size_t len, void *u)
{
	(void)u;
	printf("#   openssl: %.*s", (int)len, str);
	if (len && str[len - 1] != '\n')
		putchar('\n');
	return 1;
}

/* fail prints why the current test failed, with OpenSSL's error queue, and returns false. */
__attribute__((format(printf, 1, 2))) static bool fail(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	ERR_print_errors_cb(print_err, NULL);
	return false;
}

static void report(const char *name, bool ok)
{
	printf("%s %d %s\n", ok ? "ok" : "not ok", ++test_no, name);
	fflush(stdout);
	failed += !ok;
	ERR_clear_error();
}

/* ---- bytes ----------------------------------------------------------------------- */

/* buf_put appends `len` bytes from `p`, or `len` uninitialised bytes if `p` is NULL. */
static bool buf_put(struct buf *b, const void *p, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		uint8_t *q;

		while (cap < b->len + len)
			cap *= 2;
		q = realloc(b->data, cap);
		if (!q)
			return false;
		b->data = q;
		b->cap = cap;
	}
	if (p && len)
		memcpy(b->data + b->len, p, len);
	b->len += len;
	return true;
}

static void buf_free(struct buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* flight_make writes the frame header of `kind`/`id`, then every record `ssl` wrote. */
static bool flight_make(SSL *ssl, int kind, uint64_t id, struct buf *out)
{
	uint8_t hdr[FRAME_HDR_LEN] = {FRAME_VERSION, (uint8_t)kind};
	BIO *wbio = SSL_get_wbio(ssl);
	char *p;
	long n;

	for (int i = 0; i < 8; i++)
		hdr[2 + i] = (uint8_t)(id >> (56 - 8 * i));
	out->len = 0;
	n = BIO_get_mem_data(wbio, &p);
	if (n <= 0 || !buf_put(out, hdr, sizeof(hdr)) || !buf_put(out, p, (size_t)n))
		return false;
	return BIO_reset(wbio) == 1;
}

/* discard_written drops what `ssl` wrote (EndOfEarlyData and Finished after 0-RTT). */
static void discard_written(SSL *ssl)
{
	BIO_reset(SSL_get_wbio(ssl));
}

static bool frame_parse(const struct buf *b, struct frame *f)
{
	if (b->len < FRAME_HDR_LEN || b->data[0] != FRAME_VERSION)
		return fail("reply of %zu bytes is not a frame", b->len);
	f->kind = b->data[1];
	f->id = 0;
	for (int i = 0; i < 8; i++)
		f->id = f->id << 8 | b->data[2 + i];
	f->tls = b->data + FRAME_HDR_LEN;
	f->tls_len = b->len - FRAME_HDR_LEN;
	return true;
}

/* feed hands the records of `f` to `ssl`. */
static bool feed(SSL *ssl, const struct frame *f)
{
	return f->tls_len == 0 ||
	       BIO_write(SSL_get_rbio(ssl), f->tls, (int)f->tls_len) == (int)f->tls_len;
}

/* ---- the server process ---------------------------------------------------------- */

static bool server_start(const char *path)
{
	int in[2], out[2];

	if (pipe(in) != 0 || pipe(out) != 0)
		return fail("pipe: %s", strerror(errno));
	srv_pid = fork();
	if (srv_pid < 0)
		return fail("fork: %s", strerror(errno));
	if (srv_pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execl(path, path, crt, key, stek, SVC, (char *)NULL);
		fprintf(stderr, "interop_openssl: exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	to_srv = fdopen(in[1], "w");
	from_srv = fdopen(out[0], "r");
	return to_srv && from_srv ? true : fail("fdopen: %s", strerror(errno));
}

/* exchange sends one payload to the server and reads its reply (possibly empty). */
static bool exchange(const struct buf *msg, struct buf *reply)
{
	uint8_t hdr[4];
	uint32_t len;

	put_be32(hdr, (uint32_t)msg->len);
	if (fwrite(hdr, 1, 4, to_srv) != 4 || fwrite(msg->data, 1, msg->len, to_srv) != msg->len ||
	    fflush(to_srv) != 0)
		return fail("write to tls_echo_server: %s", strerror(errno));
	if (fread(hdr, 1, 4, from_srv) != 4)
		return fail("tls_echo_server did not answer");
	len = get_be32(hdr);
	reply->len = 0;
	if (len > (32u << 20) || !buf_put(reply, NULL, len) ||
	    fread(reply->data, 1, len, from_srv) != len)
		return fail("tls_echo_server: reply of %u bytes cut", len);
	return true;
}

/* server_stop closes its input and returns its exit status (0 = clean, no leaks). */
static int server_stop(void)
{
	int st;

	if (to_srv)
		fclose(to_srv);
	if (from_srv)
		fclose(from_srv);
	to_srv = from_srv = NULL;
	if (srv_pid <= 0 || waitpid(srv_pid, &st, 0) != srv_pid)
		return -1;
	srv_pid = -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the OpenSSL client ---------------------------------------------------------- */

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	SSL_SESSION_free(ticket);
	ticket = sess; /* returning 1 keeps the reference */
	num_tickets++;
	return 1;
}

static bool ctx_init(void)
{
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		return fail("client SSL_CTX");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(ctx,
				       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	return true;
}

/* client_new makes a client for `name` (SNI and the name the certificate must carry). */
static SSL *client_new(const char *name, SSL_SESSION *resume)
{
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());

	if (!ssl || !rbio || !wbio) {
		SSL_free(ssl);
		BIO_free(rbio);
		BIO_free(wbio);
		fail("SSL_new");
		return NULL;
	}
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_connect_state(ssl);
	if (!SSL_set_tlsext_host_name(ssl, name) || !SSL_set1_host(ssl, name) ||
	    (resume && !SSL_set_session(ssl, resume))) {
		SSL_free(ssl);
		fail("SNI, host or session");
		return NULL;
	}
	return ssl;
}

/* message writes `req` as the one message of this direction: be32 length + bytes. */
static bool message_make(const uint8_t *req, size_t len, struct buf *out)
{
	uint8_t pfx[MSG_PREFIX_LEN];

	put_be32(pfx, (uint32_t)len);
	out->len = 0;
	return buf_put(out, pfx, sizeof(pfx)) && buf_put(out, req, len);
}

/*
 * message_make_early writes `req` as 0-RTT data: be32 length, then the 18-byte
 * binding of the server it is sent to (its address as IPv6, IPv4 as
 * ::ffff:a.b.c.d, and its port), then the bytes. The server here runs behind
 * pipes and knows no address of its own, so any binding passes; this one names
 * 127.0.0.1:8000.
 */
static bool message_make_early(const uint8_t *req, size_t len, struct buf *out)
{
	static const uint8_t bind[BIND_LEN] = {0, 0,	0,    0,   0, 0, 0, 0,	  0,
					       0, 0xff, 0xff, 127, 0, 0, 1, 0x1f, 0x40};
	uint8_t pfx[MSG_PREFIX_LEN];

	put_be32(pfx, (uint32_t)(sizeof(bind) + len));
	out->len = 0;
	return buf_put(out, pfx, sizeof(pfx)) && buf_put(out, bind, sizeof(bind)) &&
	       buf_put(out, req, len);
}

/* read_all reads exactly `len` bytes of application data from the records fed so far. */
static bool read_all(SSL *ssl, uint8_t *p, size_t len)
{
	size_t got = 0, n;

	while (got < len) {
		int r = SSL_read_ex(ssl, p + got, len - got, &n);

		if (r != 1)
			return fail("SSL_read: error %d after %zu of %zu bytes (records ran out?)",
				    SSL_get_error(ssl, r), got, len);
		got += n;
	}
	return true;
}

/* response_check reads the server's message and compares it with `want`. */
static bool response_check(SSL *ssl, const uint8_t *want, size_t want_len)
{
	uint8_t pfx[MSG_PREFIX_LEN];
	uint8_t *resp;
	uint32_t len;
	bool ok;

	if (!read_all(ssl, pfx, sizeof(pfx)))
		return false;
	len = get_be32(pfx);
	if (len != want_len)
		return fail("response is %u bytes, want %zu", len, want_len);
	resp = malloc(len ? len : 1);
	if (!resp)
		return fail("malloc");
	ok = read_all(ssl, resp, len);
	if (ok && memcmp(resp, want, len) != 0)
		ok = fail("response differs from the request");
	free(resp);
	return ok;
}

/*
 * end_cleanly declares the exchange over without a close_notify (our protocol sends
 * none): OpenSSL marks the session not resumable if an SSL is freed otherwise.
 */
static void end_cleanly(SSL *ssl)
{
	SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}

static bool verified(SSL *ssl)
{
	long v = SSL_get_verify_result(ssl);

	if (v != X509_V_OK)
		return fail("verify: %s", X509_verify_cert_error_string(v));
	if (!SSL_get0_peer_certificate(ssl) && !SSL_session_reused(ssl))
		return fail("no server certificate on a full handshake");
	return true;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

/*
 * rpc_1rtt runs an exchange without early data: CLIENT_FIRST, SERVER_HANDSHAKE,
 * CLIENT_SECOND (Finished + request), SERVER_FINAL (ticket + response).
 */
static bool rpc_1rtt(SSL_SESSION *resume, const uint8_t *req, size_t len, bool want_reused)
{
	struct buf out = {0}, in = {0}, msg = {0};
	SSL *ssl = client_new(SVC, resume);
	struct frame f;
	int tickets = num_tickets;
	bool ok = false;
	int r;

	if (!ssl)
		return false;
	r = SSL_do_handshake(ssl);
	if (r == 1 || SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) {
		fail("ClientHello: SSL_do_handshake %d, error %d", r, SSL_get_error(ssl, r));
		goto out;
	}
	if (!flight_make(ssl, KIND_CLIENT_FIRST, 0, &out) || !exchange(&out, &in) ||
	    !frame_parse(&in, &f))
		goto out;
	note("CLIENT_FIRST %zu bytes, reply kind %d, %zu bytes", out.len, f.kind, in.len);
	if (f.kind != KIND_SERVER_HANDSHAKE || f.id == 0) {
		fail("want SERVER_HANDSHAKE with a handshake id, got kind %d id %llx", f.kind,
		     (unsigned long long)f.id);
		goto out;
	}
	if (!feed(ssl, &f))
		goto out;
	r = SSL_do_handshake(ssl);
	if (r != 1) {
		fail("server flight: SSL_do_handshake %d, error %d", r, SSL_get_error(ssl, r));
		goto out;
	}
	if (!verified(ssl))
		goto out;
	if (SSL_session_reused(ssl) != want_reused) {
		fail("SSL_session_reused %d, want %d", SSL_session_reused(ssl), want_reused);
		goto out;
	}
	if (!message_make(req, len, &msg))
		goto out;
	if (SSL_write(ssl, msg.data, (int)msg.len) != (int)msg.len) {
		fail("SSL_write");
		goto out;
	}
	if (!flight_make(ssl, KIND_CLIENT_SECOND, f.id, &out) || !exchange(&out, &in) ||
	    !frame_parse(&in, &f))
		goto out;
	note("CLIENT_SECOND %zu bytes, reply kind %d, %zu bytes", out.len, f.kind, in.len);
	if (f.kind != KIND_SERVER_FINAL || f.id != 0) {
		fail("want SERVER_FINAL, got kind %d id %llx", f.kind, (unsigned long long)f.id);
		goto out;
	}
	if (!feed(ssl, &f) || !response_check(ssl, req, len))
		goto out;
	if (num_tickets == tickets) {
		fail("no NewSessionTicket in SERVER_FINAL");
		goto out;
	}
	end_cleanly(ssl);
	ok = true;
out:
	SSL_free(ssl);
	buf_free(&out);
	buf_free(&in);
	buf_free(&msg);
	return ok;
}

/*
 * rpc_0rtt resumes `resume` with the request as early data: CLIENT_FIRST (ClientHello
 * + early data), SERVER_FINAL (server flight, ticket, half-RTT response). What the
 * client then writes (EndOfEarlyData, Finished) is never sent: our protocol.
 */
static bool rpc_0rtt(SSL_SESSION *resume, const uint8_t *req, size_t len)
{
	struct buf out = {0}, in = {0}, msg = {0};
	SSL *ssl = NULL;
	struct frame f;
	int tickets = num_tickets;
	size_t written = 0;
	bool ok = false;
	int r;

	if (!resume)
		return fail("no session to resume");
	if (SSL_SESSION_get_max_early_data(resume) < MSG_PREFIX_LEN + BIND_LEN + len)
		return fail("ticket allows %u bytes of early data, need %zu",
			    SSL_SESSION_get_max_early_data(resume),
			    MSG_PREFIX_LEN + BIND_LEN + len);
	ssl = client_new(SVC, resume);
	if (!ssl || !message_make_early(req, len, &msg))
		goto out;
	if (SSL_write_early_data(ssl, msg.data, msg.len, &written) != 1 || written != msg.len) {
		fail("SSL_write_early_data: %zu of %zu bytes", written, msg.len);
		goto out;
	}
	if (!flight_make(ssl, KIND_CLIENT_FIRST, 0, &out) || !exchange(&out, &in) ||
	    !frame_parse(&in, &f))
		goto out;
	note("CLIENT_FIRST with early data %zu bytes, reply kind %d, %zu bytes", out.len, f.kind,
	     in.len);
	first_0rtt.len = 0;
	if (!buf_put(&first_0rtt, out.data, out.len))
		goto out;
	if (f.kind != KIND_SERVER_FINAL || f.id != 0) {
		fail("want SERVER_FINAL (0-RTT accepted), got kind %d id %llx", f.kind,
		     (unsigned long long)f.id);
		goto out;
	}
	if (!feed(ssl, &f))
		goto out;
	/* OpenSSL finishes the handshake here: it writes EndOfEarlyData and Finished */
	r = SSL_do_handshake(ssl);
	discard_written(ssl);
	if (r != 1) {
		fail("server flight: SSL_do_handshake %d, error %d", r, SSL_get_error(ssl, r));
		goto out;
	}
	if (SSL_get_early_data_status(ssl) != SSL_EARLY_DATA_ACCEPTED) {
		fail("early data status %d, want SSL_EARLY_DATA_ACCEPTED",
		     SSL_get_early_data_status(ssl));
		goto out;
	}
	if (!SSL_session_reused(ssl)) {
		fail("not resumed");
		goto out;
	}
	if (!verified(ssl) || !response_check(ssl, req, len))
		goto out;
	discard_written(ssl);
	if (num_tickets == tickets) {
		fail("no NewSessionTicket in SERVER_FINAL");
		goto out;
	}
	end_cleanly(ssl);
	ok = true;
out:
	SSL_free(ssl);
	buf_free(&out);
	buf_free(&in);
	buf_free(&msg);
	return ok;
}

/* ---- tests ----------------------------------------------------------------------- */

static bool test_openssl_only(void)
{
	const char *v = OpenSSL_version(OPENSSL_VERSION);

	note("%s", v);
	if (OpenSSL_version_num() < 0x30000000L || !strstr(v, "OpenSSL 3"))
		return fail("this process runs %s, not OpenSSL 3", v);
	if (dlopen("libssl.so.0", RTLD_LAZY | RTLD_NOLOAD) ||
	    dlopen("libcrypto.so.0", RTLD_LAZY | RTLD_NOLOAD))
		return fail("BoringSSL (libssl.so.0/libcrypto.so.0) is loaded in this process");
	return true;
}

static bool test_full_handshake(void)
{
	static const char req[] = "hello from OpenSSL, 1-RTT";

	return rpc_1rtt(NULL, (const uint8_t *)req, sizeof(req) - 1, false);
}

static bool test_ticket_allows_early_data(void)
{
	uint32_t max;

	if (!ticket)
		return fail("no ticket");
	max = SSL_SESSION_get_max_early_data(ticket);
	note("ticket max_early_data %u, lifetime hint %lu s", max,
	     SSL_SESSION_get_ticket_lifetime_hint(ticket));
	if (!SSL_SESSION_is_resumable(ticket))
		return fail("session is not resumable");
	if (max != EARLY_DATA_MAX)
		return fail("max_early_data %u, PROTOCOL.md says %u", max, EARLY_DATA_MAX);
	return true;
}

static bool test_resumed_0rtt(void)
{
	static const char req[] = "hello from OpenSSL, 0-RTT";
	SSL_SESSION *s = ticket;
	bool ok;

	ticket = NULL; /* single use, as our client does */
	ok = rpc_0rtt(s, (const uint8_t *)req, sizeof(req) - 1);
	SSL_SESSION_free(s);
	return ok;
}

static bool test_resumed_1rtt_large(void)
{
	enum { LEN = 40000 }; /* several records each way, more than the early data limit */
	uint8_t *req = malloc(LEN);
	SSL_SESSION *s = ticket;
	bool ok;

	ticket = NULL;
	if (!req || !s) {
		free(req);
		SSL_SESSION_free(s);
		return fail("no ticket or no memory");
	}
	fill(req, LEN, 3);
	ok = rpc_1rtt(s, req, LEN, true);
	free(req);
	SSL_SESSION_free(s);
	return ok;
}

static bool test_replayed_first_flight(void)
{
	struct buf in = {0};
	struct frame f;
	bool ok = false;

	if (!first_0rtt.len)
		return fail("no 0-RTT first flight recorded");
	if (!exchange(&first_0rtt, &in) || !frame_parse(&in, &f))
		goto out;
	note("replayed CLIENT_FIRST: reply kind %d, %zu bytes", f.kind, in.len);
	if (f.kind != KIND_SERVER_HANDSHAKE || f.id == 0) {
		fail("want SERVER_HANDSHAKE (early data refused, nothing executed), got kind %d",
		     f.kind);
		goto out;
	}
	ok = true;
out:
	buf_free(&in);
	return ok;
}

static bool test_wrong_sni_error(void)
{
	struct buf out = {0}, in = {0};
	SSL *ssl = client_new("other.svc", NULL);
	struct frame f;
	bool ok = false;

	if (!ssl)
		return false;
	SSL_do_handshake(ssl);
	if (!flight_make(ssl, KIND_CLIENT_FIRST, 0, &out) || !exchange(&out, &in) ||
	    !frame_parse(&in, &f))
		goto out;
	note("CLIENT_FIRST for other.svc: reply kind %d, %zu bytes", f.kind, in.len);
	if (f.kind != KIND_ERROR || f.id != 0) {
		fail("want ERROR, got kind %d", f.kind);
		goto out;
	}
	/* the plaintext alert, if any, reaches OpenSSL as an alert */
	if (f.tls_len) {
		int r;

		feed(ssl, &f);
		r = SSL_do_handshake(ssl);
		if (r == 1) {
			fail("handshake completed after ERROR");
			goto out;
		}
	}
	ok = true;
out:
	SSL_free(ssl);
	buf_free(&out);
	buf_free(&in);
	return ok;
}

static bool test_server_clean_exit(void)
{
	int st = server_stop();

	if (st != 0)
		return fail("tls_echo_server exit status %d", st);
	return true;
}

static void cleanup(void)
{
	char cmd[400];

	if (srv_pid > 0)
		server_stop();
	SSL_SESSION_free(ticket);
	ticket = NULL;
	SSL_CTX_free(ctx);
	ctx = NULL;
	buf_free(&first_0rtt);
	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
}

int main(int argc, char **argv)
{
	char server[4096], cmd[1024];
	const char *slash;

	signal(SIGPIPE, SIG_IGN);
	if (argc > 1) {
		snprintf(server, sizeof(server), "%s", argv[1]);
	} else {
		slash = strrchr(argv[0], '/');
		snprintf(server, sizeof(server), "%.*stls_echo_server",
			 slash ? (int)(slash - argv[0] + 1) : 0, argv[0]);
	}
	if (access(server, X_OK) != 0) {
		fprintf(stderr, "interop_openssl: %s: %s (build target tls_echo_server)\n", server,
			strerror(errno));
		return 1;
	}
	if (system("command -v openssl >/dev/null 2>&1") != 0) {
		printf("SKIPPED: openssl CLI missing (tools/gen-certs.sh needs it)\n");
		return 77;
	}
	snprintf(dir, sizeof(dir), "%s/r2p2-interop.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	snprintf(cmd, sizeof(cmd), "bash '%s/tools/gen-certs.sh' '%s' " SVC " >/dev/null",
		 R2P2_SOURCE_DIR, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "gen-certs.sh failed: %s\n", cmd);
		return 1;
	}
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(crt, sizeof(crt), "%s/" SVC ".crt", dir);
	snprintf(key, sizeof(key), "%s/" SVC ".key", dir);
	snprintf(stek, sizeof(stek), "%s/stek.keys", dir);
	if (!ctx_init() || !server_start(server))
		return 1;

	printf("1..8\n");
	report("openssl_only", test_openssl_only());
	report("full_handshake_1rtt", test_full_handshake());
	report("ticket_allows_early_data", test_ticket_allows_early_data());
	report("resumed_0rtt_accepted", test_resumed_0rtt());
	report("resumed_1rtt_large", test_resumed_1rtt_large());
	report("replayed_first_flight_refused", test_replayed_first_flight());
	report("wrong_sni_error", test_wrong_sni_error());
	report("server_clean_exit", test_server_clean_exit());
	if (failed)
		printf("# %d of %d failed\n", failed, test_no);
	fflush(stdout);
	return failed ? 1 : 0;
}
