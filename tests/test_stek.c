// SPDX-License-Identifier: MIT
/* test_stek: STEK files are loaded strictly, derived keys are pinned, and TLS 1.3
 * tickets sealed under a STEK resume across servers and across a rotation.
 * BoringSSL only: minitest.h, not Criterion (see there why). */
#include "boringssl.h"

#include "minitest.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hkdf.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "stek.h"

#define K_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K_B "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
#define K_C "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"

static const char valid_file[] = "# r2p2d session-ticket encryption keys (keep secret; mode 0600)\n"
				 "# id       role      key (32 bytes, hex)\n"
				 "0000000a   current   " K_A "\n"
				 "00000009   previous  " K_B "\n"
				 "\n"
				 "0000000B\tnext      " K_C "   # trailing comment\n";

static char dir[64];
static char err[512];

static SSL_SESSION *last_session;

static void teardown(void)
{
	DIR *d;
	struct dirent *de;
	char p[512];

	if (!dir[0])
		return;
	d = opendir(dir);
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			if (unlink(p) != 0)
				rmdir(p);
		}
	if (d)
		closedir(d);
	rmdir(dir);
	dir[0] = '\0';
}

/*
 * setup gives each test a fresh directory and no leftover session (Criterion ran
 * each test in its own process; here they share one). A failed test longjmps out,
 * so the directory of the previous test is removed here and the last one at exit.
 */
static void setup(void)
{
	teardown();
	SSL_SESSION_free(last_session);
	last_session = NULL;
	strcpy(dir, "/tmp/test_stek.XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	err[0] = '\0';
}

/* STEK_TEST(name) { body } is TEST(name) with setup() first. */
#define STEK_TEST(name)                                                                            \
	static void stek_##name(void);                                                             \
	TEST(name)                                                                                 \
	{                                                                                          \
		setup();                                                                           \
		stek_##name();                                                                     \
	}                                                                                          \
	static void stek_##name(void)

/*
 * Every BoringSSL entry point we use binds to BoringSSL, and OpenSSL 3's
 * libcrypto.so.3 is not in the process at all (it exports the same names).
 */
STEK_TEST(binds_boringssl_not_openssl)
{
	const struct {
		const char *name;
		void *addr;
	} fns[] = {
	    {"SSL_CTX_new", (void *)SSL_CTX_new},
	    {"SSL_CTX_set_ticket_aead_method", (void *)SSL_CTX_set_ticket_aead_method},
	    {"EVP_aead_aes_256_gcm", (void *)EVP_aead_aes_256_gcm},
	    {"HKDF", (void *)HKDF},
	    {"RAND_bytes", (void *)RAND_bytes},
	    {"OPENSSL_cleanse", (void *)OPENSSL_cleanse},
	};
	void *ossl;

	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		Dl_info info;

		CHECK_MSG(dladdr(fns[i].addr, &info), "dladdr(%s)", fns[i].name);
		CHECK_MSG(strstr(info.dli_fname, "/android/lib") != NULL,
			  "%s resolves to %s, not BoringSSL", fns[i].name, info.dli_fname);
	}
	CHECK_MSG(strstr(OpenSSL_version(OPENSSL_VERSION), "BoringSSL") != NULL, "%s",
		  OpenSSL_version(OPENSSL_VERSION));
	ossl = dlopen("libcrypto.so.3", RTLD_LAZY | RTLD_NOLOAD);
	CHECK_MSG(ossl == NULL, "OpenSSL 3's libcrypto.so.3 is loaded in this process");
}

/* put writes `text` to dir/name with `mode` and returns the path (static buffer). */
static const char *put(const char *name, const char *text, mode_t mode)
{
	static char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	CHECK(f != NULL);
	fputs(text, f);
	CHECK_EQ(fclose(f), 0);
	CHECK_EQ(chmod(p, mode), 0);
	return p;
}

static struct stek_set *load_ok(const char *path)
{
	struct stek_set *set = NULL;
	int rc = stek_load(path, &set, err, sizeof(err));

	CHECK_MSG(rc == 0, "stek_load: %d %s", rc, err);
	CHECK(set != NULL);
	return set;
}

static void load_fails(const char *text, mode_t mode, int want, const char *want_msg)
{
	struct stek_set *set = (struct stek_set *)1;
	const char *p = put("bad.keys", text, mode);
	int rc = stek_load(p, &set, err, sizeof(err));

	CHECK_MSG(rc == want, "rc %d, want %d (%s)", rc, want, err);
	CHECK(set == NULL);
	CHECK_MSG(strstr(err, want_msg) != NULL, "message '%s' lacks '%s'", err, want_msg);
	CHECK_MSG(strstr(err, p) != NULL, "message '%s' does not name the path", err);
}

STEK_TEST(load_valid)
{
	struct stek_set *set = load_ok(put("ok.keys", valid_file, 0600));
	const struct stek_key *k;

	CHECK_EQ(stek_num_keys(set), 3);
	k = stek_current(set);
	CHECK_EQ(k->id, 0xa);
	CHECK_EQ(k->role, STEK_CURRENT);
	CHECK_EQ(k->key[0], 0x00);
	CHECK_EQ(k->key[31], 0x1f);
	k = stek_find(set, 9);
	CHECK(k != NULL);
	CHECK_EQ(k->role, STEK_PREVIOUS);
	CHECK_EQ(k->key[0], 0xa0);
	k = stek_find(set, 0xb);
	CHECK(k != NULL);
	CHECK_EQ(k->role, STEK_NEXT);
	CHECK(stek_find(set, 0xc) == NULL);

	/* refcount: a second holder keeps it alive after the first put */
	CHECK_EQ(stek_set_get(set), set);
	stek_set_put(set);
	CHECK_EQ(stek_current(set)->id, 0xa);
	stek_set_put(set);
	stek_set_put(NULL);
}

STEK_TEST(load_owner_only_modes)
{
	struct stek_set *set;

	set = load_ok(put("a.keys", valid_file, 0600));
	stek_set_put(set);
	set = load_ok(put("b.keys", valid_file, 0400));
	stek_set_put(set);
}

STEK_TEST(refuse_group_or_world_readable)
{
	load_fails(valid_file, 0644, -EPERM, "is mode 0644; it must not be readable");
	load_fails(valid_file, 0640, -EPERM, "is mode 0640");
	load_fails(valid_file, 0604, -EPERM, "(chmod 600)");
	load_fails(valid_file, 0620, -EPERM, "is mode 0620");
}

STEK_TEST(any_mode_flag_for_status)
{
	struct stek_set *set = NULL;
	const char *p = put("loose.keys", valid_file, 0644);

	CHECK_MSG(stek_load_ex(p, STEK_LOAD_ANY_MODE, &set, err, sizeof(err)) == 0, "%s", err);
	stek_set_put(set);
}

STEK_TEST(refuse_not_regular)
{
	struct stek_set *set = NULL;
	char p[512];

	snprintf(p, sizeof(p), "%s/sub", dir);
	CHECK_EQ(mkdir(p, 0700), 0);
	CHECK_EQ(stek_load(p, &set, err, sizeof(err)), -EINVAL);
	CHECK_MSG(strstr(err, "not a regular file") != NULL, "%s", err);
	snprintf(p, sizeof(p), "%s/missing", dir);
	CHECK_EQ(stek_load(p, &set, err, sizeof(err)), -ENOENT);
	CHECK_MSG(strstr(err, p) != NULL, "%s", err);
}

STEK_TEST(refuse_bad_syntax)
{
	load_fails("0000000a current " K_A "x\n", 0600, -EINVAL, ":1: key must be 64 hex digits");
	load_fails(
	    "0000000a current 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g\n",
	    0600, -EINVAL, ":1: key must be 64 hex");
	load_fails("# c\n\n000000a current " K_A "\n", 0600, -EINVAL,
		   ":3: key id must be 8 hex digits");
	load_fails("0000000x current " K_A "\n", 0600, -EINVAL, ":1: key id must be 8 hex");
	load_fails("0000000a current\n", 0600, -EINVAL, ":1: expected 'ID ROLE KEY'");
	load_fails("0000000a current " K_A " extra\n", 0600, -EINVAL, ":1: expected 'ID ROLE KEY'");
	load_fails("0000000a primary " K_A "\n", 0600, -EINVAL, ":1: unknown role 'primary'");
}

STEK_TEST(refuse_bad_sets)
{
	load_fails("0000000a current " K_A "\n0000000b current " K_B "\n", 0600, -EINVAL,
		   ":2: second current key");
	load_fails("0000000a previous " K_A "\n0000000b next " K_B "\n", 0600, -EINVAL,
		   "no current key");
	load_fails("", 0600, -EINVAL, "no current key");
	load_fails("0000000a current " K_A "\n0000000a previous " K_B "\n", 0600, -EINVAL,
		   ":2: duplicate key id 0000000a");
	load_fails("0000000a current " K_A "\n00000001 previous " K_B "\n00000002 previous " K_C
		   "\n",
		   0600, -EINVAL, ":3: second previous key");
}

STEK_TEST(derive_known_answer_and_labels)
{
	static const uint8_t want_ticket[32] = {0xb2, 0xce, 0xbb, 0xb1, 0xdb, 0x8e, 0x9b, 0xbb,
						0x89, 0xda, 0xec, 0x5e, 0x76, 0x00, 0xa9, 0xbb,
						0x23, 0xb6, 0xb6, 0xfa, 0xe3, 0x59, 0xd3, 0x37,
						0x7f, 0x2b, 0xf0, 0xa5, 0xae, 0xcc, 0x7d, 0xbe};
	/* HKDF-SHA256(ikm = 00..1f, no salt, info = "r2p2 sealed token"), by Python's hmac */
	static const uint8_t want_sealed[32] = {0x01, 0xc8, 0xd3, 0x7b, 0xe5, 0x22, 0x04, 0x7a,
						0xb1, 0x17, 0xcc, 0x98, 0x69, 0x4e, 0xa6, 0xa6,
						0xc2, 0x07, 0x80, 0x57, 0x70, 0x9b, 0x8f, 0x3c,
						0x6f, 0xef, 0x5e, 0x3d, 0x26, 0x96, 0xa1, 0x99};
	struct stek_set *set = load_ok(put("ok.keys", valid_file, 0600));
	const struct stek_key *k = stek_current(set);
	uint8_t a[32], b[32], c[32];

	CHECK_EQ(stek_derive(k, STEK_LABEL_TLS_TICKET, a, sizeof(a)), 0);
	CHECK_EQ(stek_derive(k, STEK_LABEL_TLS_TICKET, b, sizeof(b)), 0);
	CHECK_EQ(stek_derive(k, "r2p2 sealed token", c, sizeof(c)), 0);
	CHECK_MSG(memcmp(a, b, 32) == 0, "derive is not deterministic");
	CHECK_MSG(memcmp(a, want_ticket, 32) == 0, "tls ticket key differs from the pinned value");
	CHECK_MSG(memcmp(c, want_sealed, 32) == 0, "sealed key differs from the pinned value");
	CHECK(memcmp(a, c, 32) != 0);
	CHECK_EQ(stek_derive(stek_find(set, 9), STEK_LABEL_TLS_TICKET, b, sizeof(b)), 0);
	CHECK_MSG(memcmp(a, b, 32) != 0, "two keys derived the same ticket key");
	stek_set_put(set);
}

static void check_no_key_bytes(const char *text, const struct stek_set *set)
{
	for (size_t i = 0; i < stek_num_keys(set); i++) {
		const struct stek_key *k = stek_key_at(set, i);
		char hex[65];

		for (int j = 0; j < 32; j++)
			snprintf(hex + 2 * j, 3, "%02x", k->key[j]);
		/* no 16-digit run of any key, in either case */
		for (int off = 0; off + 16 <= 64; off += 8) {
			char run[17];

			memcpy(run, hex + off, 16);
			run[16] = '\0';
			CHECK_MSG(strcasestr(text, run) == NULL, "key bytes leaked: %s", text);
		}
	}
}

STEK_TEST(describe_lists_ids_never_keys)
{
	struct stek_set *set = load_ok(put("ok.keys", valid_file, 0600));
	char buf[512];
	int n = stek_describe(set, buf, sizeof(buf));

	CHECK(n > 0);
	CHECK_EQ((size_t)n, strlen(buf));
	CHECK_MSG(strstr(buf, "0000000a  current") != NULL, "%s", buf);
	CHECK_MSG(strstr(buf, "00000009  previous") != NULL, "%s", buf);
	CHECK_MSG(strstr(buf, "0000000b  next") != NULL, "%s", buf);
	CHECK_MSG(strstr(buf, "fp 34a1e2eb935f555a") != NULL, "fingerprint not pinned: %s", buf);
	check_no_key_bytes(buf, set);
	/* truncation: snprintf semantics */
	CHECK_EQ(stek_describe(set, buf, 10), n);
	CHECK_EQ(strlen(buf), 9);
	stek_set_put(set);
}

static mode_t mode_of(const char *p)
{
	struct stat st;

	CHECK_EQ(stat(p, &st), 0);
	return st.st_mode & 07777;
}

STEK_TEST(generate_then_load)
{
	struct stek_set *set;
	char p[512];

	snprintf(p, sizeof(p), "%s/new.keys", dir);
	CHECK_MSG(stek_generate_file(p, err, sizeof(err)) == 0, "%s", err);
	CHECK_EQ(mode_of(p), 0600);
	set = load_ok(p);
	CHECK_EQ(stek_num_keys(set), 1);
	CHECK_EQ(stek_current(set)->role, STEK_CURRENT);
	CHECK(stek_current(set)->id != 0);
	stek_set_put(set);
	/* never replaces a key file */
	CHECK_EQ(stek_generate_file(p, err, sizeof(err)), -EEXIST);
	CHECK_MSG(strstr(err, "already exists") != NULL, "%s", err);
}

STEK_TEST(rotate_roles_and_ids)
{
	struct stek_set *s0, *s1, *s2, *back;
	uint8_t next_key[32];
	uint32_t id;
	char p[512];

	snprintf(p, sizeof(p), "%s/rot.keys", dir);
	CHECK_MSG(stek_generate_file(p, err, sizeof(err)) == 0, "%s", err);
	s0 = load_ok(p);
	id = stek_current(s0)->id;

	/* only a current key: the new current and next are both fresh */
	CHECK_MSG(stek_rotate_file(p, &s1, err, sizeof(err)) == 0, "%s", err);
	CHECK_EQ(mode_of(p), 0600);
	CHECK_EQ(stek_num_keys(s1), 3);
	CHECK_EQ(stek_find(s1, id)->role, STEK_PREVIOUS);
	CHECK_MEM(stek_find(s1, id)->key, stek_current(s0)->key, 32);
	CHECK_EQ(stek_current(s1)->id, id + 1);
	CHECK_EQ(stek_find(s1, id + 2)->role, STEK_NEXT);
	memcpy(next_key, stek_find(s1, id + 2)->key, 32);
	back = load_ok(p); /* the file says what the returned set says */
	CHECK_EQ(stek_current(back)->id, id + 1);
	CHECK_MEM(stek_current(back)->key, stek_current(s1)->key, 32);
	stek_set_put(back);

	/* with a next key: it is promoted, the old previous is dropped */
	CHECK_EQ(chmod(p, 0400), 0);
	CHECK_MSG(stek_rotate_file(p, &s2, err, sizeof(err)) == 0, "%s", err);
	CHECK_MSG(mode_of(p) == 0400, "rotate did not keep the mode");
	CHECK_EQ(stek_num_keys(s2), 3);
	CHECK(stek_find(s2, id) == NULL);
	CHECK_EQ(stek_find(s2, id + 1)->role, STEK_PREVIOUS);
	CHECK_EQ(stek_current(s2)->id, id + 2);
	CHECK_MEM(stek_current(s2)->key, next_key, 32);
	CHECK_EQ(stek_find(s2, id + 3)->role, STEK_NEXT);

	stek_set_put(s0);
	stek_set_put(s1);
	stek_set_put(s2);
}

STEK_TEST(rotate_refuses_symlink_and_loose_mode)
{
	char p[512], l[512];

	snprintf(p, sizeof(p), "%s/real.keys", dir);
	snprintf(l, sizeof(l), "%s/link.keys", dir);
	CHECK_MSG(stek_generate_file(p, err, sizeof(err)) == 0, "%s", err);
	CHECK_EQ(symlink(p, l), 0);
	CHECK_EQ(stek_rotate_file(l, NULL, err, sizeof(err)), -EINVAL);
	CHECK_MSG(strstr(err, "symbolic link") != NULL, "%s", err);
	CHECK_EQ(chmod(p, 0644), 0);
	CHECK_EQ(stek_rotate_file(p, NULL, err, sizeof(err)), -EPERM);
}

/* ---- TLS 1.3 resumption through the ticket AEAD --------------------------------- */

struct pki {
	EVP_PKEY *pkey;
	X509 *cert;
};

/* make_pki creates a throwaway self-signed P-256 certificate for "echo.svc". */
static struct pki make_pki(void)
{
	struct pki p = {EVP_PKEY_new(), X509_new()};
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	X509_NAME *name;

	CHECK(ec && p.pkey && p.cert);
	CHECK(EC_KEY_generate_key(ec));
	CHECK(EVP_PKEY_assign_EC_KEY(p.pkey, ec));
	CHECK(X509_set_version(p.cert, X509_VERSION_3));
	CHECK(ASN1_INTEGER_set(X509_get_serialNumber(p.cert), 1));
	CHECK(X509_gmtime_adj(X509_getm_notBefore(p.cert), -60));
	CHECK(X509_gmtime_adj(X509_getm_notAfter(p.cert), 3600));
	name = X509_get_subject_name(p.cert);
	CHECK(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					 (const unsigned char *)"echo.svc", -1, -1, 0));
	CHECK(X509_set_issuer_name(p.cert, name));
	CHECK(X509_set_pubkey(p.cert, p.pkey));
	CHECK(X509_sign(p.cert, p.pkey, EVP_sha256()));
	return p;
}

static SSL_CTX *server_ctx(const struct pki *p, struct stek_set *set)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	CHECK(ctx != NULL);
	CHECK(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION));
	CHECK(SSL_CTX_use_certificate(ctx, p->cert));
	CHECK(SSL_CTX_use_PrivateKey(ctx, p->pkey));
	CHECK_EQ(stek_install_ticket_aead(ctx, NULL), 0);
	CHECK_EQ(stek_ctx_attach(ctx, set), 0);
	return ctx;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	SSL_SESSION_free(last_session);
	last_session = sess; /* returning 1 takes the reference */
	return 1;
}

static SSL_CTX *client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	CHECK(ctx != NULL);
	CHECK(SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION));
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	return ctx;
}

/*
 * connect_once runs a full in-memory TLS 1.3 connection between a new client SSL
 * (offering `resume` if not NULL) and a new server SSL, lets the client read the
 * server's tickets, and returns SSL_session_reused as seen by the client.
 */
static int connect_once(SSL_CTX *cctx, SSL_CTX *sctx, SSL_SESSION *resume)
{
	SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
	BIO *cb, *sb;
	int cdone = 0, sdone = 0, reused;
	uint8_t byte;

	CHECK(c && s);
	CHECK(BIO_new_bio_pair(&cb, 0, &sb, 0));
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	CHECK(SSL_set_tlsext_host_name(c, "echo.svc"));
	if (resume)
		CHECK(SSL_set_session(c, resume));
	for (int i = 0; i < 20 && !(cdone && sdone); i++) {
		if (!cdone) {
			int r = SSL_do_handshake(c);

			cdone = r == 1;
			CHECK_MSG(cdone || SSL_get_error(c, r) == SSL_ERROR_WANT_READ,
				  "client handshake error %d: %s", SSL_get_error(c, r),
				  ERR_reason_error_string(ERR_peek_error()));
		}
		if (!sdone) {
			int r = SSL_do_handshake(s);

			sdone = r == 1;
			CHECK_MSG(sdone || SSL_get_error(s, r) == SSL_ERROR_WANT_READ,
				  "server handshake error %d: %s", SSL_get_error(s, r),
				  ERR_reason_error_string(ERR_peek_error()));
		}
	}
	CHECK_MSG(cdone && sdone, "handshake did not finish");
	CHECK_EQ(SSL_version(c), TLS1_3_VERSION);
	/* BoringSSL's server sends its NewSessionTickets with its first write (here the
	 * "response"); the client processes them while reading it */
	CHECK_EQ(SSL_write(s, "r", 1), 1);
	CHECK_EQ(SSL_read(c, &byte, 1), 1);
	CHECK_EQ(byte, 'r');
	reused = SSL_session_reused(c);
	CHECK_EQ(SSL_session_reused(s), reused);
	SSL_free(c);
	SSL_free(s);
	return reused;
}

static SSL_SESSION *take_session(void)
{
	SSL_SESSION *s = last_session;

	CHECK_MSG(s != NULL, "the server issued no ticket");
	last_session = NULL;
	return s;
}

STEK_TEST(tls13_tickets_resume_across_rotation)
{
	struct pki pki = make_pki();
	struct stek_set *s0, *s1, *other, *forged;
	struct stek_ticket_stats st;
	SSL_CTX *cctx = client_ctx(), *srv0, *srv0b, *srv1, *srv_other, *srv_forged;
	SSL_SESSION *sess;
	char p[512], q[512], text[512];

	snprintf(p, sizeof(p), "%s/svc.keys", dir);
	CHECK_MSG(stek_generate_file(p, err, sizeof(err)) == 0, "%s", err);
	s0 = load_ok(p);
	srv0 = server_ctx(&pki, s0);
	srv0b = server_ctx(&pki, s0); /* another server of the service, same STEK */

	/* full handshake, then resumption on another server with the same key */
	CHECK_EQ(connect_once(cctx, srv0, NULL), 0);
	sess = take_session();
	stek_ticket_stats(srv0, &st);
	CHECK(st.sealed >= 1);
	CHECK_MSG(connect_once(cctx, srv0b, sess) == 1, "no resumption under the same STEK");
	stek_ticket_stats(srv0b, &st);
	CHECK_EQ(st.opened, 1);

	/* a server that rotated: the ticket's key is now previous, still resumes */
	CHECK_MSG(stek_rotate_file(p, &s1, err, sizeof(err)) == 0, "%s", err);
	CHECK(stek_current(s1)->id != stek_current(s0)->id);
	CHECK_EQ(stek_find(s1, stek_current(s0)->id)->role, STEK_PREVIOUS);
	srv1 = server_ctx(&pki, s1);
	CHECK_MSG(connect_once(cctx, srv1, sess) == 1, "old current key no longer decrypts");
	SSL_SESSION_free(take_session());

	/* a server without that key id: full handshake, counted as unknown_id */
	snprintf(q, sizeof(q), "%s/other.keys", dir);
	snprintf(text, sizeof(text), "%08x current %s\n", stek_current(s0)->id + 100, K_C);
	other = load_ok(put("other.keys", text, 0600));
	srv_other = server_ctx(&pki, other);
	CHECK_MSG(connect_once(cctx, srv_other, sess) == 0, "resumed without the key");
	stek_ticket_stats(srv_other, &st);
	CHECK_EQ(st.unknown_id, 1);
	CHECK_EQ(st.opened, 0);
	SSL_SESSION_free(take_session());

	/* same id, different key bytes: authentication fails, full handshake */
	snprintf(text, sizeof(text), "%08x current %s\n", stek_current(s0)->id, K_C);
	forged = load_ok(put("forged.keys", text, 0600));
	srv_forged = server_ctx(&pki, forged);
	CHECK_MSG(connect_once(cctx, srv_forged, sess) == 0, "resumed under the wrong key");
	stek_ticket_stats(srv_forged, &st);
	CHECK_EQ(st.bad, 1);
	CHECK_EQ(st.unknown_id, 0);
	SSL_SESSION_free(take_session());

	SSL_SESSION_free(sess);
	SSL_CTX_free(srv0);
	SSL_CTX_free(srv0b);
	SSL_CTX_free(srv1);
	SSL_CTX_free(srv_other);
	SSL_CTX_free(srv_forged);
	SSL_CTX_free(cctx);
	/* the contexts held their own references */
	stek_set_put(s0);
	stek_set_put(s1);
	stek_set_put(other);
	stek_set_put(forged);
	X509_free(pki.cert);
	EVP_PKEY_free(pki.pkey);
}

/* get_set path: a per-worker pointer instead of an attached set */
static struct stek_set *worker_set;

static struct stek_set *get_worker_set(SSL *ssl)
{
	(void)ssl;
	return worker_set;
}

STEK_TEST(tls13_tickets_with_get_set_hook)
{
	struct pki pki = make_pki();
	struct stek_ticket_stats st;
	SSL_CTX *cctx = client_ctx(), *sctx = SSL_CTX_new(TLS_method());
	SSL_SESSION *sess;

	worker_set = load_ok(put("w.keys", valid_file, 0600));
	CHECK(SSL_CTX_use_certificate(sctx, pki.cert));
	CHECK(SSL_CTX_use_PrivateKey(sctx, pki.pkey));
	CHECK_EQ(stek_install_ticket_aead(sctx, get_worker_set), 0);
	CHECK_EQ(connect_once(cctx, sctx, NULL), 0);
	sess = take_session();
	CHECK_EQ(connect_once(cctx, sctx, sess), 1);
	stek_ticket_stats(sctx, &st);
	CHECK_EQ(st.opened, 1);
	CHECK_EQ(st.seal_fail, 0);
	SSL_SESSION_free(take_session());
	SSL_SESSION_free(sess);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	stek_set_put(worker_set);
	X509_free(pki.cert);
	EVP_PKEY_free(pki.pkey);
}

/*
 * A STEK file must belong to root or to the daemon's user: its owner can rewrite it
 * (or chmod it) at will, so another owner would hold every ticket and token key.
 */
STEK_TEST(load_refuses_another_owner)
{
	struct stek_set *set = (struct stek_set *)1;
	const char *p;
	char want[512];
	int rc;

	if (geteuid() != 0) {
		/* the other half (a file of our own passes) is every other test here */
		printf("# skipped: making a file of another owner needs root (chown)\n");
		return;
	}
	set = load_ok(put("root.keys", valid_file, 0600));
	stek_set_put(set);
	set = (struct stek_set *)1;
	p = put("nobody.keys", valid_file, 0600);
	CHECK_EQ(chown(p, 65534, 65534), 0);
	rc = stek_load(p, &set, err, sizeof(err));
	CHECK_MSG(rc == -EPERM, "rc %d (%s)", rc, err);
	CHECK(set == NULL);
	CHECK_MSG(strstr(err, p) != NULL, "message '%s' does not name the path", err);
	CHECK_MSG(strstr(err, "owned by uid 65534") != NULL, "message '%s' lacks the owner", err);
	CHECK_MSG(strstr(err, "root or by the daemon's user") != NULL,
		  "message '%s' lacks the rule", err);
	/* the mode is fine; only the owner is refused. r2p2ctl status may still read it */
	CHECK_EQ(stek_load_ex(p, STEK_LOAD_ANY_MODE, &set, err, sizeof(err)), 0);
	stek_set_put(set);
	/* a file of the daemon's own (non-root) user passes: run as uid 65534 to see it */
	snprintf(want, sizeof(want), "%s", p);
	CHECK_EQ(chmod(dir, 0711), 0); /* let uid 65534 reach the file */
	if (seteuid(65534) == 0) {
		rc = stek_load(want, &set, err, sizeof(err));
		CHECK_EQ(seteuid(0), 0);
		CHECK_MSG(rc == 0, "own file refused: %d %s", rc, err);
		stek_set_put(set);
	}
}

int main(int argc, char **argv)
{
	atexit(teardown);
	return mt_run(argc, argv);
}
