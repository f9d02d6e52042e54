/*-------------------------------------------------------------------------
 *
 * tls.c
 *		Optional TLS: with --tls-cert and --tls-key the server speaks HTTPS
 *		only (there is no plain listener beside it), every response carries
 *		Strict-Transport-Security, and ALPN offers http/1.1, plus h2 only
 *		when --http2=1.
 *
 * Invariants:
 *	- Both files or neither; they are read and checked before anything
 *	  binds: readable, PEM, the key unencrypted (a passphrase prompt would
 *	  hang a service) and matching the certificate.  A bad one stops the
 *	  server with a message naming the flag.
 *	- TLS 1.2 at least; for 1.2 only ECDHE with an AEAD cipher (the
 *	  suites HTTP/2 also accepts), no compression (CRIME), no
 *	  renegotiation.  TLS 1.3 keeps OpenSSL's suites, all AEAD.
 *	- One SSL_CTX, built before the threads start and read-only after:
 *	  each thread's accept_ctx points at it (OpenSSL allows a context to be
 *	  shared by threads once it is configured).
 *	- ALPN never offers h2 unless --http2=1; h2o then treats the connection
 *	  as HTTP/1.1, whatever the client asked for.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "pgbank_http.h"

SSL_CTX    *pbh_tls_ctx = NULL;

static char hsts_value[64];
static size_t hsts_len;

/* ALPN without HTTP/2; h2o_alpn_protocols is h2 (and drafts), then http/1.1 */
static const h2o_iovec_t http1_alpn[] = {{H2O_STRLIT("http/1.1")}, {NULL, 0}};

/* the ECDHE + AEAD suites of TLS 1.2 (Mozilla's intermediate set, no DHE) */
#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* an encrypted key is refused instead of prompting on a terminal */
static int
no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	return 0;
}

/* OpenSSL's first queued error as text, and the queue cleared */
static const char *
ssl_error(char *buf, size_t len)
{
	unsigned long e = ERR_peek_error();

	if (e == 0)
		snprintf(buf, len, "unknown error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static int
readable(const char *flag, const char *path, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "r");

	if (f == NULL)
	{
		snprintf(err, errlen, "--%s: cannot open %s: %s", flag, path, strerror(errno));
		return 0;
	}
	fclose(f);
	return 1;
}

int
pbh_tls_init(char *err, size_t errlen)
{
	const char *cert = pbh_config.tls_cert,
			   *key = pbh_config.tls_key;
	char		ebuf[256];
	SSL_CTX    *ctx;
	FILE	   *f;
	EVP_PKEY   *pkey;
	X509	   *x509;

	if (cert != NULL && cert[0] == '\0')
		cert = NULL;
	if (key != NULL && key[0] == '\0')
		key = NULL;
	if (cert == NULL && key == NULL)
	{
		if (pbh_config.http2)
		{
			snprintf(err, errlen, "--http2=1 needs TLS (--tls-cert and --tls-key): HTTP/2 is offered by ALPN only, never as h2c");
			return -1;
		}
		return 0;
	}
	if (cert == NULL || key == NULL)
	{
		snprintf(err, errlen, "--tls-cert and --tls-key go together: give both or neither");
		return -1;
	}
	if (!readable("tls-cert", cert, err, errlen) || !readable("tls-key", key, err, errlen))
		return -1;

	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
	{
		snprintf(err, errlen, "cannot create a TLS context: %s", ssl_error(ebuf, sizeof(ebuf)));
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1)
	{
		snprintf(err, errlen, "cannot set the TLS 1.2 ciphers: %s", ssl_error(ebuf, sizeof(ebuf)));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
	{
		snprintf(err, errlen, "--tls-cert: %s holds no usable PEM certificate (%s)", cert,
				 ssl_error(ebuf, sizeof(ebuf)));
		goto fail;
	}

	/* the key read by hand: a clear message for each way it can be wrong */
	if ((f = fopen(key, "r")) == NULL)
	{
		snprintf(err, errlen, "--tls-key: cannot open %s: %s", key, strerror(errno));
		goto fail;
	}
	pkey = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (pkey == NULL)
	{
		snprintf(err, errlen, "--tls-key: %s holds no unencrypted PEM private key (%s)", key,
				 ssl_error(ebuf, sizeof(ebuf)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1)
	{
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		snprintf(err, errlen, "--tls-key: the key in %s does not match the certificate in %s",
				 key, cert);
		goto fail;
	}
	EVP_PKEY_free(pkey);
	x509 = SSL_CTX_get0_certificate(ctx);
	if (x509 != NULL && X509_cmp_current_time(X509_get0_notAfter(x509)) < 0)
		fprintf(stderr, "pgbank-http: warning: the certificate in %s has expired\n", cert);

	h2o_ssl_register_alpn_protocols(ctx, pbh_config.http2 ? h2o_alpn_protocols : http1_alpn);
	hsts_len = (size_t) snprintf(hsts_value, sizeof(hsts_value), "max-age=%d",
								 pbh_config.hsts_max_age);
	pbh_tls_ctx = ctx;
	return 0;

fail:
	SSL_CTX_free(ctx);
	return -1;
}

void
pbh_tls_add_headers(h2o_req_t *req)
{
	if (pbh_tls_ctx == NULL)
		return;
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("strict-transport-security"),
						  0, NULL, hsts_value, hsts_len);
}
