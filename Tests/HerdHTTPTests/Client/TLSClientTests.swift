import Glibc
import HerdJSON
import HerdRuntime
import HerdTestSupport
import Testing
@testable import HerdHTTP

/// The HTTP client over TLS (OpenSSL over memory buffers on the libuv
/// stream) against a real HTTPS server on loopback with its own CA:
/// verified, refused when not trusted or not the name connected to, kept
/// alive across requests, streams de-chunked as over plain TCP.
@Suite(.serialized) struct TLSClientTests {
    static var repository: String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(4) // Tests/HerdHTTPTests/Client/TLSClientTests.swift
        return parts.joined(separator: "/")
    }

    /// The HTTPS provider of Tests/support, started in a directory of its own.
    static func provider(mode: String = "ok") throws -> (RunningProcess, port: Int, directory: String) {
        let directory = temporaryDirectory("herd-tls")
        let port = freePort()
        let process = try RunningProcess(name: "provider", path: "/usr/bin/python3",
                                         arguments: [repository + "/Tests/support/https_provider.py", directory, String(port), "--mode", mode],
                                         logDirectory: directory)
        guard process.waitForOutput("listening on", seconds: 30) else { throw TestError("the HTTPS provider did not start: \(process.output)") }
        return (process, port, directory)
    }

    static let chat = HTTPClientRequest(method: "POST", target: "/v1/chat/completions", headers: ["Content-Type": "application/json",
                                        "Authorization": "Bearer sk-test"], body: Array(#"{"model":"gpt-cloud","messages":[]}"#.utf8))

    @Test func httpsWithThePrivateCAIsVerifiedAndKeptAlive() throws {
        let (provider, port, directory) = try Self.provider()
        defer { provider.stop(); removeTemporaryDirectory(directory) }
        let fixture = try LoopFixture()
        defer { fixture.shutdown() }
        let context = try TLSClientContext(caFile: directory + "/ca.pem")
        let address = try SocketAddress(host: "127.0.0.1", port: port)
        for name in ["localhost", "127.0.0.1"] {
            for _ in 0..<3 {
                let delegate = CollectingDelegate()
                _ = try fixture.onLoop { fixture.client.execute(Self.chat, in: fixture.client.pool(for: address, tls: context, serverName: name), delegate: delegate) }
                try delegate.wait(10_000)
                #expect(delegate.head?.status == 200, "\(name): \(String(describing: delegate.error))")
                #expect(try JSONValue.parse(delegate.body)["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue == "Paris, from the cloud.")
            }
            let opened = try fixture.onLoop { fixture.client.pool(for: address, tls: context, serverName: name).connectionsOpened }
            #expect(opened == 1, "one TLS connection for three requests (\(name))")
        }
        // A stream, chunked under TLS.
        var stream = Self.chat
        stream.body = Array(#"{"model":"gpt-cloud","stream":true,"messages":[]}"#.utf8)
        let delegate = CollectingDelegate()
        _ = try fixture.onLoop { fixture.client.execute(stream, in: fixture.client.pool(for: address, tls: context, serverName: "localhost"), delegate: delegate) }
        try delegate.wait(10_000)
        #expect(delegate.text.contains("data: [DONE]") && delegate.text.contains("Paris,"), "\(delegate.text)")
    }

    @Test func anUntrustedCertificateOrAnotherNameIsRefused() throws {
        let (provider, port, directory) = try Self.provider()
        defer { provider.stop(); removeTemporaryDirectory(directory) }
        let fixture = try LoopFixture()
        defer { fixture.shutdown() }
        let address = try SocketAddress(host: "127.0.0.1", port: port)
        // The system's store does not know the test CA.
        let system = try TLSClientContext()
        let untrusted = CollectingDelegate()
        _ = try fixture.onLoop { fixture.client.execute(Self.chat, in: fixture.client.pool(for: address, tls: system, serverName: "localhost"), delegate: untrusted) }
        try untrusted.wait(10_000)
        guard case let .tlsFailed(reason)? = untrusted.error else { Issue.record("\(String(describing: untrusted.error))"); return }
        #expect(reason.contains("certificate"), "\(reason)")
        // The right CA, the wrong name.
        let context = try TLSClientContext(caFile: directory + "/ca.pem")
        let wrong = CollectingDelegate()
        _ = try fixture.onLoop { fixture.client.execute(Self.chat, in: fixture.client.pool(for: address, tls: context, serverName: "api.example.com"), delegate: wrong) }
        try wrong.wait(10_000)
        guard case let .tlsFailed(mismatch)? = wrong.error else { Issue.record("\(String(describing: wrong.error))"); return }
        #expect(mismatch.contains("hostname mismatch") || mismatch.contains("certificate"), "\(mismatch)")
        #expect(throws: TLSError.self) { try TLSClientContext(caFile: directory + "/no-such-ca.pem") }
        #expect(untrusted.error?.isBeforeResponse == true, "nothing reached the caller: another upstream may be tried")
    }

    @Test func aPlainHTTPServerIsNotMistakenForTLS() throws {
        let fixture = try LoopFixture()
        defer { fixture.shutdown() }
        let context = try TLSClientContext()
        let delegate = CollectingDelegate()
        _ = try fixture.onLoop { fixture.client.execute(Self.chat, in: fixture.client.pool(for: fixture.backendAddress, tls: context, serverName: "localhost"),
                                                        delegate: delegate) }
        try delegate.wait(10_000)
        #expect(delegate.head == nil && delegate.error != nil, "\(String(describing: delegate.error))")
    }
}
