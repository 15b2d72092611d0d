import Testing
import HerdJSON
@testable import HerdSecurity
@testable import HerdWire

@Suite struct FleetKeyTests {
    @Test func sha256StandardVectors() {
        #expect(SHA256.hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex(SHA256.hash([UInt8](repeating: 0x61, count: 1_000))) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test func hmacRFC4231Vectors() {
        let key = [UInt8](repeating: 0x0b, count: 20)
        #expect(SHA256.hex(SHA256.hmac(key: key, message: Array("Hi There".utf8))) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(SHA256.hex(SHA256.hmac(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        let longKey = [UInt8](repeating: 0xaa, count: 131)
        #expect(SHA256.hex(SHA256.hmac(key: longKey, message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test func verifierAcceptsOnceAndRefusesTheRest() throws {
        let key = try #require(FleetKey("correct horse battery staple"))
        let verifier = FleetKeyVerifier(key: key, maxSkewMilliseconds: 30_000)
        let body = Array(#"{"schema":1}"#.utf8)
        func verify(_ headers: [(name: String, value: String)], _ body: [UInt8], now: Int) throws(FleetKeyRefusal) {
            try verifier.verify(method: "POST", path: "/heartbeat", timestamp: headers.first { $0.name == FleetKey.timestampHeader }?.value,
                                signature: headers.first { $0.name == FleetKey.signatureHeader }?.value, body: body, now: now)
        }
        let headers = key.headers(method: "POST", path: "/heartbeat", body: body, now: 1_000_000)
        try verify(headers, body, now: 1_000_500)
        #expect(throws: FleetKeyRefusal.replayed) { try verify(headers, body, now: 1_000_600) }
        #expect(throws: FleetKeyRefusal.missing) { try verify([], body, now: 1_000_000) }
        let tampered = Array(#"{"schema":2}"#.utf8)
        let fresh = key.headers(method: "POST", path: "/heartbeat", body: body, now: 1_000_001)
        #expect(throws: FleetKeyRefusal.badSignature) { try verify(fresh, tampered, now: 1_000_001) }
        let other = try #require(FleetKey("another key of sixteen+"))
        #expect(throws: FleetKeyRefusal.badSignature) {
            try verify(other.headers(method: "POST", path: "/heartbeat", body: body, now: 1_000_002), body, now: 1_000_002)
        }
        let old = key.headers(method: "POST", path: "/heartbeat", body: body, now: 900_000)
        #expect(throws: FleetKeyRefusal.stale(skewMilliseconds: 100_000)) { try verify(old, body, now: 1_000_000) }
        #expect(FleetKey("short") == nil)
    }

    /// Found under attack: a captured heartbeat replayed with its signature
    /// in upper case (or mixed case) was accepted as new.
    @Test func aReplayInAnotherCaseIsStillAReplay() throws {
        let key = try #require(FleetKey("correct horse battery staple"))
        let verifier = FleetKeyVerifier(key: key)
        let body = Array(#"{"schema":1}"#.utf8)
        let signature = key.signature(timestamp: 5_000, method: "POST", path: "/heartbeat", body: body)
        try verifier.verify(method: "POST", path: "/heartbeat", timestamp: "5000", signature: signature, body: body, now: 5_000)
        for variant in [signature.uppercased(), String(signature.prefix(32)).uppercased() + signature.dropFirst(32)] {
            #expect(throws: FleetKeyRefusal.replayed) {
                try verifier.verify(method: "POST", path: "/heartbeat", timestamp: "5000", signature: variant, body: body, now: 5_001)
            }
        }
        #expect(throws: FleetKeyRefusal.malformed) {
            try verifier.verify(method: "POST", path: "/heartbeat", timestamp: "5000", signature: String(repeating: "zz", count: 32), body: body, now: 5_001)
        }
    }
}

/// Found by trying: a timestamp near Int.min overflowed `abs(now - timestamp)`
/// before the signature was checked, and one request killed control.
@Suite struct FleetKeyHostileTests {
    @Test func extremeTimestampsAreStaleNotACrash() throws {
        let verifier = FleetKeyVerifier(key: try #require(FleetKey("correct horse battery staple")))
        let signature = String(repeating: "ab", count: 32)
        for stamp in [String(Int.min), String(Int.min + 1), String(Int.max), "-9223372036854775808", "9223372036854775807"] {
            #expect(throws: FleetKeyRefusal.self) {
                try verifier.verify(method: "POST", path: "/heartbeat", timestamp: stamp, signature: signature, body: [], now: 1_800_000_000_000)
            }
        }
        #expect(throws: FleetKeyRefusal.malformed) {
            try verifier.verify(method: "POST", path: "/heartbeat", timestamp: String(repeating: "9", count: 400), signature: signature, body: [], now: 0)
        }
        #expect(FleetKeyVerifier.skew(Int.max, Int.min) == Int.max && FleetKeyVerifier.skew(Int.min, Int.max) == Int.max)
        #expect(FleetKeyVerifier.skew(5, 3) == 2 && FleetKeyVerifier.skew(3, 5) == 2)
    }
}

/// Every number in a heartbeat has a range: outside it the heartbeat is refused, naming the field.
@Suite struct HeartbeatRangeTests {
    func refusal(_ json: String) -> String? {
        do {
            _ = try Heartbeat(json: try JSONValue.parse(json))
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func outOfRangeFieldsAreNamed() {
        let backend = #""kind":"ollama","address":"127.0.0.1:9""#
        let cases: [(String, String)] = [
            (#"{"schema":1,"node_id":"n","memory":{"total_bytes":9000000000000000000}}"#, "memory.total_bytes"),
            (#"{"schema":1,"node_id":"n","cpu":{"utilization":1e300}}"#, "cpu.utilization"),
            (#"{"schema":1,"node_id":"n","cpu":{"cores":-1}}"#, "cpu.cores"),
            (#"{"schema":1,"node_id":"n","interval_ms":1}"#, "interval_ms"),
            (#"{"schema":1,"node_id":"n","sent_at_ms":-5}"#, "sent_at_ms"),
            (#"{"schema":1,"node_id":"n","backends":[{\#(backend),"loaded":[{"name":"m","size":4000000000000000000,"context_length":1}]}]}"#, "loaded[0].size"),
            (#"{"schema":1,"node_id":"n","backends":[{\#(backend),"loaded":[{"name":"m","context_length":1e14}]}]}"#, "context_length"),
            (#"{"schema":1,"node_id":"n","backends":[{\#(backend),"models":[{"name":"m","size":-1}]}]}"#, "models[0].size"),
            (#"{"schema":1,"node_id":"n","backends":[{\#(backend),"loaded":[{"name":""}]}]}"#, "loaded[0].name"),
            (#"{"schema":1,"node_id":"n","telemetry":{"gpus":[{"temperature_c":5000}]}}"#, "temperature_c"),
            (#"{"schema":1,"node_id":"n","telemetry":{"gpus":[{"memory_total_bytes":-7}]}}"#, "memory_total_bytes"),
            (#"{"schema":1,"node_id":"n","backends":[{\#(backend),"error":"\#(String(repeating: "e", count: 2_000))"}]}"#, "error"),
        ]
        for (json, field) in cases {
            let message = refusal(json)
            #expect(message?.contains(field) == true, "\(field): \(message ?? "accepted")")
        }
        #expect(refusal(#"{"schema":1,"node_id":"n","interval_ms":6000,"memory":{"total_bytes":1125899906842624}}"#) == nil)
    }

    /// What herd-node sends is fitted to the ranges first: a backend that
    /// reports nonsense costs that value, not the node's heartbeats.
    @Test func aNodeFitsWhatItReportsToTheRanges() throws {
        var gpu = Telemetry.GPU(vendor: String(repeating: "v", count: 999), name: "g", memoryUsedBytes: -5, memoryTotalBytes: Int.max)
        gpu.temperatureCelsius = .nan
        gpu.powerWatts = 1e300
        var telemetry = Telemetry()
        telemetry.gpus = Array(repeating: gpu, count: 20)
        telemetry.load1 = .infinity
        var backend = Heartbeat.Backend(kind: .ollama, url: String(repeating: "u", count: 5_000), address: "127.0.0.1:11434", reachable: true,
                                        error: String(repeating: "e", count: 5_000),
                                        models: [Heartbeat.Model(name: "m", sizeBytes: -1), Heartbeat.Model(name: ""),
                                                 Heartbeat.Model(name: String(repeating: "n", count: 600))],
                                        loaded: [Heartbeat.LoadedModel(name: "m", sizeBytes: Int.max, vramBytes: Int.min, contextLength: 1 << 40)],
                                        parallel: 99_999)
        backend.directClients = Array(repeating: "10.0.0.1", count: 20)
        var beat = Heartbeat(nodeID: "n", sentAtMilliseconds: Int.max, cpuCores: -3, cpuUtilization: .nan, memoryTotalBytes: Int.max,
                             memoryAvailableBytes: Int.min, backends: [backend], telemetry: telemetry)
        beat.intervalMilliseconds = 1
        var fitted = beat.fittedToRanges()
        try fitted.validate()
        let json = fitted.json
        #expect(try Heartbeat(json: json).backends[0].models.map(\.name) == ["m"])
        #expect(fitted.backends[0].loaded[0].contextLength == HeartbeatRanges.contextLength.upperBound)
        #expect(fitted.backends[0].parallel == nil && fitted.telemetry.gpus.count == 16 && fitted.telemetry.gpus[0].temperatureCelsius == nil)
    }
}
