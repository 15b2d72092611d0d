// OpenSSL's libssl (Debian libssl-dev): TLS for HTTPS upstreams (cloud providers),
// over memory BIOs on the libuv stream. The macros Swift cannot import, as functions.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

static inline int herd_ssl_ctx_min_tls12(SSL_CTX *ctx) { return (int)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); }
static inline int herd_ssl_set_sni(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
static inline int herd_ssl_set_ip(SSL *ssl, const char *ip) { return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip); }
