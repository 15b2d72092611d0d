internal import CTLS
import HerdRuntime

/// How HTTPS upstreams are trusted: the system's certificate store
/// (`/etc/ssl/certs`), or one CA file (`--provider-ca`, a private CA).
/// TLS 1.2 at least; the peer's certificate is verified, and its name (or
/// IP address) must be the one connected to.
public final class TLSClientContext: @unchecked Sendable {
    let context: OpaquePointer

    public init(caFile: String? = nil) throws(TLSError) {
        guard let method = TLS_client_method(), let context = SSL_CTX_new(method) else { throw TLSError("cannot make a TLS context: \(TLSError.queue())") }
        self.context = context
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        guard herd_ssl_ctx_min_tls12(context) == 1 else { throw TLSError("cannot require TLS 1.2: \(TLSError.queue())") }
        if let caFile {
            guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else {
                throw TLSError("cannot read the CA file \(caFile): \(TLSError.queue())")
            }
        } else {
            guard SSL_CTX_set_default_verify_paths(context) == 1 else { throw TLSError("cannot read the system's certificates: \(TLSError.queue())") }
        }
    }

    deinit { SSL_CTX_free(context) }
}

/// A TLS failure: its reason, for the log and the client's error.
public struct TLSError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// OpenSSL's error queue, emptied, as text.
    static func queue() -> String {
        var parts: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            if parts.count < 4 { parts.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
        }
        return parts.isEmpty ? "unknown error" : parts.joined(separator: "; ")
    }
}

/// One TLS client session over memory buffers: the connection hands it what
/// the socket read and writes what it gives back. No I/O of its own.
/// Loop-thread only.
final class TLSSession {
    private let ssl: OpaquePointer
    private let inbound: OpaquePointer
    private let outbound: OpaquePointer
    private(set) var handshakeDone = false
    private var buffer = [UInt8](repeating: 0, count: 16 * 1024)

    /// `serverName`: the host connected to (sent as SNI, and checked against the certificate).
    init(context: TLSClientContext, serverName: String) throws(TLSError) {
        guard let ssl = SSL_new(context.context) else { throw TLSError("cannot make a TLS session: \(TLSError.queue())") }
        guard let inbound = BIO_new(BIO_s_mem()), let outbound = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError("cannot make TLS buffers")
        }
        self.ssl = ssl
        self.inbound = inbound
        self.outbound = outbound
        SSL_set_bio(ssl, inbound, outbound) // the session owns both now
        SSL_set_connect_state(ssl)
        // An IP literal is checked against the certificate's IP addresses; a name against its DNS names (and sent as SNI).
        let isAddress = serverName.contains(":") || (!serverName.isEmpty && serverName.utf8.allSatisfy { $0 == 0x2E || ($0 >= 0x30 && $0 <= 0x39) })
        if isAddress {
            guard herd_ssl_set_ip(ssl, serverName) == 1 else { throw TLSError("cannot check the certificate against \(serverName)") }
        } else {
            _ = herd_ssl_set_sni(ssl, serverName)
            guard SSL_set1_host(ssl, serverName) == 1 else { throw TLSError("cannot check the certificate against \(serverName)") }
        }
    }

    deinit { SSL_free(ssl) }

    /// Starts the handshake: the bytes to send (the ClientHello).
    func start() throws(TLSError) -> [UInt8] {
        try advance()
        return drain()
    }

    /// What the socket read: its plaintext appended to `plain`; returns the
    /// bytes to send back (the rest of the handshake, alerts, key updates).
    func receive(_ bytes: UnsafeRawBufferPointer, into plain: inout [UInt8]) throws(TLSError) -> [UInt8] {
        var rest = bytes
        while !rest.isEmpty {
            let n = BIO_write(inbound, rest.baseAddress, Int32(clamping: rest.count))
            guard n > 0 else { throw TLSError("TLS buffer write failed") }
            rest = UnsafeRawBufferPointer(rebasing: rest[Int(n)...])
        }
        if !handshakeDone { try advance() }
        if handshakeDone {
            while true {
                let n = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32(clamping: $0.count)) }
                if n > 0 {
                    plain.append(contentsOf: buffer[0..<Int(n)])
                    continue
                }
                let error = SSL_get_error(ssl, n)
                if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { break }
                if error == SSL_ERROR_ZERO_RETURN { break } // close_notify: the socket's end follows
                throw TLSError("TLS read failed: \(TLSError.queue())")
            }
        }
        return drain()
    }

    /// Plaintext to send: its ciphertext (the handshake must be done).
    func seal(_ plain: UnsafeRawBufferPointer) throws(TLSError) -> [UInt8] {
        var rest = plain
        while !rest.isEmpty {
            let n = SSL_write(ssl, rest.baseAddress, Int32(clamping: min(rest.count, 1 << 20)))
            guard n > 0 else { throw TLSError("TLS write failed: \(TLSError.queue())") }
            rest = UnsafeRawBufferPointer(rebasing: rest[Int(n)...])
        }
        return drain()
    }

    private func advance() throws(TLSError) {
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            handshakeDone = true
            return
        }
        let error = SSL_get_error(ssl, rc)
        if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { return }
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            let reason = String(cString: X509_verify_cert_error_string(verify))
            _ = TLSError.queue()
            throw TLSError("the server's certificate was not accepted: \(reason)")
        }
        throw TLSError("TLS handshake failed: \(TLSError.queue())")
    }

    /// Everything the session wrote to the outbound buffer.
    private func drain() -> [UInt8] {
        var out: [UInt8] = []
        while BIO_ctrl_pending(outbound) > 0 {
            let n = buffer.withUnsafeMutableBytes { BIO_read(outbound, $0.baseAddress, Int32(clamping: $0.count)) }
            guard n > 0 else { break }
            out.append(contentsOf: buffer[0..<Int(n)])
        }
        return out
    }
}
