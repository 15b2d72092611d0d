// OpenSSL's libcrypto (Debian libssl-dev): SHA-256, HMAC, constant-time compare.
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
