import Glibc
import HerdJSON
import HerdTestSupport
import HerdWire
import Testing
@testable import herd_proxy

/// A multipart form as clients send it: `fields` in order, the file where `fileAt` says.
func multipartForm(boundary: String, fields: [(String, String)], file: [UInt8], fileAt: Int) -> [UInt8] {
    var out: [UInt8] = []
    func field(_ name: String, _ value: String) {
        out += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
    }
    for (i, (name, value)) in fields.enumerated() {
        if i == fileAt { out += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n".utf8) + file + [13, 10] }
        field(name, value)
    }
    if fileAt >= fields.count { out += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n".utf8) + file + [13, 10] }
    out += Array("--\(boundary)--\r\n".utf8)
    return out
}

/// The proxy reads a form's `model` (before or after the file) without decoding the file.
@Suite struct MultipartFieldsTests {
    let type = "multipart/form-data; boundary=XyZ123"
    func read(_ body: [UInt8], _ contentType: String? = "multipart/form-data; boundary=XyZ123") throws(RouteFields.Invalid) -> RouteFields {
        // Not partial: a whole form gives its fields or an error, never nil.
        try RouteFields.readForm(body, contentType: contentType, headerFallbacks: [], headerTags: [])!
    }

    @Test func modelBeforeOrAfterTheFile() throws {
        // The file holds things that look like a boundary and a field, but are not one.
        let file = Array("--XyZ12 name=\"model\"\r\n\r\nnot-me\r\n".utf8) + [UInt8](repeating: 0xFF, count: 100_000)
        for at in 0...2 {
            let form = multipartForm(boundary: "XyZ123", fields: [("model", "whisper-tiny"), ("stream", "true")], file: file, fileAt: at)
            let fields = try read(form)
            #expect(fields.model == "whisper-tiny", "file at \(at)")
            #expect(fields.stream)
        }
        let quoted = multipartForm(boundary: "a b", fields: [("model", "m")], file: [1, 2, 3], fileAt: 1)
        #expect(try read(quoted, #"Multipart/Form-Data; charset=utf-8; boundary="a b""#).model == "m")
    }

    @Test func badFormsAreClear400s() {
        func message(_ body: [UInt8], _ contentType: String? = "multipart/form-data; boundary=XyZ123") -> String {
            do { _ = try read(body, contentType); return "accepted" } catch { return error.message }
        }
        let good = multipartForm(boundary: "XyZ123", fields: [("model", "m")], file: [1], fileAt: 0)
        #expect(message(good, nil).contains("multipart/form-data"))
        #expect(message(good, "application/json").contains("multipart/form-data"))
        #expect(message(good, "multipart/form-data; boundary=" + String(repeating: "b", count: 71)).contains("boundary"))
        #expect(message(multipartForm(boundary: "XyZ123", fields: [("language", "en")], file: [1], fileAt: 0)).contains("no \"model\""))
        #expect(message(Array(good.dropLast(12))).contains("closing boundary"))
        #expect(message(Array("garbage".utf8)).contains("no part"))
        #expect(message(multipartForm(boundary: "XyZ123", fields: [("model", String(repeating: "m", count: 5_000))], file: [], fileAt: 1))
            .contains("at most"))
        let many = multipartForm(boundary: "XyZ123", fields: (0..<300).map { ("f\($0)", "v") } + [("model", "m")], file: [], fileAt: 999)
        #expect(message(many).contains("256 parts"))
        var endless = Array("--XyZ123\r\nContent-Disposition: form-data; name=\"model\"".utf8)
        endless += [UInt8](repeating: 0x20, count: 20_000)
        #expect(message(endless).contains("8 KiB"))
    }

    @Test func randomBytesNeverTrap() {
        var generator = SystemRandomNumberGenerator()
        let pieces: [[UInt8]] = [Array("--XyZ123".utf8), [13, 10], [13, 10, 13, 10], Array("--".utf8),
                                 Array("Content-Disposition: form-data; name=\"model\"".utf8), Array("m".utf8), [0, 255]]
        for _ in 0..<2_000 {
            var body: [UInt8] = []
            for _ in 0..<Int.random(in: 0...12, using: &generator) { body += pieces.randomElement(using: &generator)! }
            _ = try? read(body)
        }
    }

    @Test func aFormStillArrivingGivesItsModelOnceWhole() throws {
        func partial(_ body: [UInt8]) throws(RouteFields.Invalid) -> RouteFields? {
            try RouteFields.readForm(body, contentType: type, headerFallbacks: [], headerTags: [], partial: true)
        }
        let form = multipartForm(boundary: "XyZ123", fields: [("model", "whisper-tiny"), ("stream", "true")],
                                 file: [UInt8](repeating: 9, count: 50_000), fileAt: 2)
        let modelEnd = form.count - 25_000 // inside the file, well after the model part
        // Cut anywhere before the model part is whole: read more; after: the model.
        for cut in stride(from: 0, to: 60, by: 1) {
            #expect(try partial(Array(form.prefix(cut))) == nil, "cut at \(cut)")
        }
        #expect(try partial(Array(form.prefix(modelEnd)))?.model == "whisper-tiny")
        #expect(try partial(Array(form.prefix(modelEnd)))?.stream == true)
        // The model after the file: nothing until the form is whole.
        let late = multipartForm(boundary: "XyZ123", fields: [("model", "m")], file: [UInt8](repeating: 9, count: 50_000), fileAt: 0)
        #expect(try partial(Array(late.prefix(40_000))) == nil)
        #expect(try partial(late)?.model == "m")
        // Headers that never end are refused once past 8 KiB, partial or not.
        var endless = Array("--XyZ123\r\nContent-Disposition: form-data; name=\"model\"".utf8)
        #expect(try partial(endless) == nil)
        endless += [UInt8](repeating: 0x20, count: 20_000)
        #expect(throws: RouteFields.Invalid.self) { try partial(endless) }
    }

    @Test func aRelayedUploadIsNotSentTwice() {
        var flow = ProxyFlow()
        _ = flow.start()
        let answer = RouteAnswer(id: 1, node: "n1", upstream: "127.0.0.1:1", backend: .openai, model: "m")
        _ = flow.routed(answer)
        flow.retryable = false
        let actions = flow.upstreamFailed(.connectionLost(nil, afterResponseStarted: false), status: 0)
        guard case let .failClient(error)? = actions.first else { Issue.record("\(actions)"); return }
        #expect(error.status == 502 && error.message.contains("send it again"))
        #expect(flow.phase == .finished)
        // A 5xx is relayed, not retried elsewhere.
        var second = ProxyFlow()
        _ = second.start()
        _ = second.routed(answer)
        second.retryable = false
        #expect(second.upstreamHead(status: 503) == [.relayHead])
        // Over the limit mid-relay: 413 before the response, an explicit end after.
        var third = ProxyFlow()
        _ = third.start()
        _ = third.routed(answer)
        #expect(third.uploadTooLarge("too big").contains(.cancelUpstream))
        #expect(third.phase == .finished)
    }

    @Test func base64DecodesWhatOpenAISends() {
        #expect(herd_proxy.Base64.decode("ZmFrZQ==") == Array("fake".utf8))
        #expect(herd_proxy.Base64.decode("aGVyZA") == Array("herd".utf8))
        #expect(herd_proxy.Base64.decode("") == [])
        #expect(herd_proxy.Base64.decode("a b") == nil)
        #expect(herd_proxy.Base64.decode(String(repeating: "/", count: 4000))?.count == 3000)
    }

    @Test func workKindsByPath() {
        #expect(Endpoint.at("/api/transcribe") == .legacyTranscribe && Endpoint.at("/v1/chat/completions") == .openAIChat)
        #expect(Endpoint.at("/v1/chat/completionz") == nil && Endpoint.at("") == nil && Endpoint.at(String(repeating: "x", count: 99)[...]) == nil)
        #expect(WorkKind(path: "/api/transcribe") == .stt && WorkKind(path: "/api/generate-image") == .image)
        #expect(WorkKind(path: "/v1/audio/transcriptions") == .stt)
        #expect(WorkKind(path: "/v1/audio/speech") == .tts)
        #expect(WorkKind(path: "/v1/images/edits") == .image)
        #expect(WorkKind(path: "/api/embed") == .embed)
        #expect(WorkKind(path: "/v1/chat/completions") == .chat)
        #expect(BackendKind.stt.serves(.stt) && !BackendKind.stt.serves(.chat) && BackendKind.openai.serves(.image))
        #expect(!BackendKind.ollama.serves(.tts) && BackendKind.ollama.serves(.embed))
        #expect(Endpoint.transcriptions.isForm && !Endpoint.speech.isForm && !Endpoint.speech.bodyIsPrompt)
    }
}

/// A fleet where each kind of work lives on its own backend: speech-to-text,
/// text-to-speech and images each reach the backend that does them, whole.
@Suite(.serialized) struct MultimodalFleetTests {
    @Test func eachJobLandsOnTheBackendThatDoesIt() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        fleet.controlEnvironment = ["HERD_MAX_UPLOAD_MB": "2"]
        try fleet.addBackend("CHAT", arguments: ["--models", "llama3:8b", "--loaded", "llama3:8b"])
        let stt = try fleet.addBackend("STT", arguments: ["--models", "whisper-tiny"])
        let tts = try fleet.addBackend("TTS", arguments: ["--models", "voice-a"])
        let image = try fleet.addBackend("IMG", arguments: ["--models", "sd-turbo"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "CHAT", extra: ["--backend", "stt=http://127.0.0.1:\(stt)#whisper-tiny"])
        try fleet.addNode("node-b", backend: "TTS", extra: ["--ollama", "none", "--backend", "tts=http://127.0.0.1:\(tts)#voice-a",
                                                            "--backend", "image=http://127.0.0.1:\(image)#sd-turbo"])
        try fleet.waitForNodes(2)

        func upload(_ path: String, _ form: [UInt8], boundary: String = "XyZ123", chunked: Bool = false) throws -> RawResponse {
            let client = try RawClient(port: fleet.proxyPort, timeoutSeconds: 30)
            let framing = chunked ? "Transfer-Encoding: chunked" : "Content-Length: \(form.count)"
            client.send("POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=\(boundary)\r\n\(framing)\r\n\r\n")
            if chunked {
                var at = 0
                while at < form.count {
                    let piece = form[at..<min(form.count, at + 65_536)]
                    client.send(Array(String(piece.count, radix: 16).utf8) + [13, 10] + Array(piece) + [13, 10])
                    at += piece.count
                }
                client.send("0\r\n\r\n")
            } else {
                client.send(form)
            }
            return try client.readResponse()
        }
        let audio = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        for fileAt in [0, 1] {
            let form = multipartForm(boundary: "XyZ123", fields: [("model", "whisper-tiny"), ("language", "en")], file: audio, fileAt: fileAt)
            let response = try upload("/v1/audio/transcriptions", form)
            #expect(response.status == 200, "\(response.text.prefix(300))")
            #expect(response.header("X-Fake-Backend") == "STT")
            #expect(response.header("X-Herd-Node") == "node-a")
            let json = try JSONValue.parse(response.body)
            #expect(json["herd_fake"]?["bytes"]?.intValue == form.count, "the upload arrives whole")
        }
        let chunkedForm = multipartForm(boundary: "XyZ123", fields: [("model", "whisper-tiny")], file: audio, fileAt: 0)
        let chunked = try upload("/v1/audio/translations", chunkedForm, chunked: true)
        #expect(chunked.status == 200 && chunked.header("X-Fake-Backend") == "STT", "\(chunked.text.prefix(300))")

        let speech = fleet.post("/v1/audio/speech", #"{"model":"voice-a","input":"Hello from the fleet.","voice":"alloy"}"#)
        #expect(speech.status == 200, "\(speech.text.prefix(300))")
        #expect(speech.header("X-Fake-Backend") == "TTS" && speech.header("X-Herd-Node") == "node-b")
        #expect(speech.header("Content-Type") == "audio/wav")
        #expect(Array(speech.body.prefix(4)) == Array("RIFF".utf8) && speech.body.count == 44 + (21 * 100 / 8) * 8 * 2, "\(speech.body.count) bytes")

        let picture = fleet.post("/v1/images/generations", #"{"model":"sd-turbo","prompt":"a red fox","size":"256x256"}"#)
        #expect(picture.status == 200 && picture.header("X-Fake-Backend") == "IMG", "\(picture.text.prefix(300))")
        let edit = try upload("/v1/images/edits", multipartForm(boundary: "XyZ123", fields: [("model", "sd-turbo"), ("prompt", "bluer")],
                                                                 file: Array(audio.prefix(1000)), fileAt: 0))
        #expect(edit.status == 200 && edit.header("X-Fake-Backend") == "IMG", "\(edit.text.prefix(300))")

        // Ollama Herd's own paths: /api/transcribe (audio in `audio`, no model) and /api/generate-image (PNG bytes back).
        var legacyForm = Array("--XyZ123\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n\r\n".utf8)
        legacyForm += Array(audio.prefix(5000)) + Array("\r\n--XyZ123--\r\n".utf8)
        let legacy = try upload("/api/transcribe", legacyForm)
        #expect(legacy.status == 200 && legacy.header("X-Fake-Backend") == "STT", "\(legacy.text.prefix(300))")
        let legacyJSON = try JSONValue.parse(legacy.body)
        #expect(legacyJSON["herd_fake"]?["model"]?.stringValue == "whisper-tiny", "the fleet's speech-to-text model is named")
        #expect(legacyJSON["text"]?.stringValue?.isEmpty == false)
        let noAudio = try upload("/api/transcribe", multipartForm(boundary: "XyZ123", fields: [("language", "en")], file: [], fileAt: 9))
        #expect(noAudio.status == 400 && noAudio.text.contains("audio"), "\(noAudio.text)")
        let png = fleet.post("/api/generate-image", #"{"model":"sd-turbo","prompt":"a red fox","width":256,"height":256}"#)
        #expect(png.status == 200 && png.header("X-Fake-Backend") == "IMG" && png.header("Content-Type") == "image/png", "\(png.text.prefix(300))")
        #expect(png.text == "fake", "the image's bytes, decoded from b64_json")
        let noPrompt = fleet.post("/api/generate-image", #"{"model":"sd-turbo"}"#)
        #expect(noPrompt.status == 400 && noPrompt.text.contains("prompt"), "\(noPrompt.text)")

        // A chat sent to a speech model, or a speech job to a chat model: a clear 400, nothing sent.
        let chat = fleet.post("/v1/chat/completions", #"{"model":"whisper-tiny","messages":[{"role":"user","content":"hi"}]}"#)
        #expect(chat.status == 400 && chat.text.contains("chat and text generation") && chat.text.contains("stt"), "\(chat.text)")
        let wrong = fleet.post("/v1/audio/speech", #"{"model":"llama3:8b","input":"hi"}"#)
        #expect(wrong.status == 400 && wrong.text.contains("text-to-speech"), "\(wrong.text)")
        #expect(fleet.backendRequests("STT", path: "/v1/chat/completions") == 0)
        #expect(fleet.backendRequests("CHAT", path: "/v1/audio/speech") == 0)

        // Over --max-upload-mb: 413 in OpenAI's shape, announced or chunked.
        let big = multipartForm(boundary: "XyZ123", fields: [("model", "whisper-tiny")], file: [UInt8](repeating: 7, count: 3 * 1024 * 1024), fileAt: 1)
        for chunked in [false, true] {
            let response = try upload("/v1/audio/transcriptions", big, chunked: chunked)
            #expect(response.status == 413, "chunked \(chunked): \(response.status) \(response.text.prefix(200))")
            #expect((try? JSONValue.parse(response.body))?["error"]?["message"]?.stringValue?.contains("--max-upload-mb") == true)
        }
        let noModel = try upload("/v1/audio/transcriptions", multipartForm(boundary: "XyZ123", fields: [("language", "en")], file: [1, 2], fileAt: 0))
        #expect(noModel.status == 400 && noModel.text.contains("model"))

        // Seeing it: the score says the work, traces its kind and size, /metrics counts by kind.
        #expect(speech.header("X-Herd-Score")?.contains("work=") == true, "\(speech.header("X-Herd-Score") ?? "")")
        #expect(waitUntil(seconds: 10) {
            let traces = (try? JSONValue.parse(fleet.getControl("/api/v1/traces?model=voice-a").body))?["traces"]?.arrayValue ?? []
            return traces.contains { $0["work"]?.stringValue == "tts" && $0["work_units"]?.doubleValue == 21 }
        }, "the speech trace says 21 characters")
        let metrics = fleet.getControl("/metrics").text
        #expect(metrics.contains(#"herd_work_requests_total{work="stt",outcome="ok"}"#), "\(metrics.prefix(500))")
        #expect(metrics.contains(#"herd_work_units_total{work="tts",unit="characters"} "#))
        #expect(metrics.contains(#"herd_work_requests_total{work="chat",outcome="rejected"}"#))

        // The listings: every model with its kind; speech and image models are not Ollama models.
        let models = (try JSONValue.parse(fleet.get("/v1/models").body))["data"]?.arrayValue ?? []
        let kinds = Dictionary(uniqueKeysWithValues: models.compactMap { m in m["id"]?.stringValue.map { ($0, m["herd_kind"]?.stringValue ?? "") } })
        #expect(kinds == ["llama3:8b": "chat", "whisper-tiny": "stt", "voice-a": "tts", "sd-turbo": "image"])
        let tags = (try JSONValue.parse(fleet.get("/api/tags").body))["models"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(tags == ["llama3:8b"])
    }

    /// An upload goes to its backend while it arrives (the backend has the
    /// request before the client has sent its file), arrives whole, and a
    /// client that stalls mid-upload is cut by the body timeout.
    @Test func uploadsAreRelayedAsTheyArrive() throws {
        let fleet = TestFleet()
        defer { fleet.shutdown() }
        fleet.controlEnvironment = ["HERD_MAX_UPLOAD_MB": "8", "HERD_CLIENT_BODY_TIMEOUT": "1"]
        let stt = try fleet.addBackend("STT", arguments: ["--models", "whisper-tiny"])
        try fleet.startControl()
        try fleet.addNode("node-a", backend: "STT", extra: ["--ollama", "none", "--backend", "stt=http://127.0.0.1:\(stt)#whisper-tiny"])
        try fleet.waitForNodes(1)
        func heads() -> Int {
            let stats = fleet.request("GET", "/_fake/stats", body: nil, headers: [:], port: stt)
            return (try? JSONValue.parse(stats.body))?["heads_by_path"]?["/v1/audio/transcriptions"]?.intValue ?? 0
        }
        let audio = (0..<4_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let form = multipartForm(boundary: "XyZ123", fields: [("model", "whisper-tiny")], file: audio, fileAt: 1)
        for chunked in [false, true] {
            let before = heads()
            let client = try RawClient(port: fleet.proxyPort, timeoutSeconds: 30)
            let framing = chunked ? "Transfer-Encoding: chunked" : "Content-Length: \(form.count)"
            client.send("POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XyZ123\r\n\(framing)\r\n\r\n")
            func piece(_ range: Range<Int>) {
                let bytes = Array(form[range])
                client.send(chunked ? Array(String(bytes.count, radix: 16).utf8) + [13, 10] + bytes + [13, 10] : bytes)
            }
            piece(0..<300_000)
            #expect(waitUntil(seconds: 6) { heads() == before + 1 }, "the backend has the request before the upload ends (chunked \(chunked))")
            piece(300_000..<form.count)
            if chunked { client.send("0\r\n\r\n") }
            let response = try client.readResponse()
            #expect(response.status == 200, "\(response.text.prefix(300))")
            #expect((try? JSONValue.parse(response.body))?["herd_fake"]?["bytes"]?.intValue == form.count, "arrives whole (chunked \(chunked))")
        }
        // Over h2c (curl --http2-prior-knowledge -F): relayed whole, as over HTTP/1.1.
        let folder = temporaryDirectory("herd-upload")
        defer { removeTemporaryDirectory(folder) }
        let file = folder + "/audio.bin"
        let written = audio.withUnsafeBytes { raw -> Bool in
            guard let f = fopen(file, "w") else { return false }
            defer { fclose(f) }
            return fwrite(raw.baseAddress, 1, raw.count, f) == raw.count
        }
        #expect(written)
        func curlBytes(_ extra: [String]) -> Int? {
            let result = ProcessRunner.run("/usr/bin/curl", ["-s"] + extra + ["-F", "model=whisper-tiny", "-F", "file=@\(file)",
                                                                           "http://127.0.0.1:\(fleet.proxyPort)/v1/audio/transcriptions"])
            return (try? JSONValue.parse(Array(result.output.utf8)))?["herd_fake"]?["bytes"]?.intValue
        }
        let overHTTP1 = curlBytes([]), overH2 = curlBytes(["--http2-prior-knowledge"])
        #expect(overHTTP1 != nil && overHTTP1 == overH2 && (overH2 ?? 0) > audio.count, "\(String(describing: overHTTP1)) \(String(describing: overH2))")

        // A client that stops mid-upload is cut; the proxy goes on serving.
        let stalled = try RawClient(port: fleet.proxyPort, timeoutSeconds: 30)
        stalled.send("POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XyZ123\r\nContent-Length: \(form.count)\r\n\r\n")
        stalled.send(Array(form.prefix(200_000)))
        #expect(stalled.isClosedByPeer(seconds: 20), "a stalled upload is cut by the body timeout")
        let small = multipartForm(boundary: "XyZ123", fields: [("model", "whisper-tiny")], file: [1, 2, 3], fileAt: 1)
        let client = try RawClient(port: fleet.proxyPort, timeoutSeconds: 30)
        client.send("POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=XyZ123\r\nContent-Length: \(small.count)\r\n\r\n")
        client.send(small)
        #expect(try client.readResponse().status == 200)
    }
}

/// What a job's size is, read from the request.
@Suite struct WorkUnitsTests {
    /// A PCM WAV header: `seconds` at 16 kHz mono 16-bit (data size as given, or the streaming 0xFFFFFFFF).
    func wav(seconds: Double, streamingSize: Bool = false) -> [UInt8] {
        func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)] }
        func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
        let data = UInt32(seconds * 32_000)
        var out = Array("RIFF".utf8) + le32(36 + data) + Array("WAVE".utf8)
        out += Array("fmt ".utf8) + le32(16) + le16(1) + le16(1) + le32(16_000) + le32(32_000) + le16(2) + le16(16)
        out += Array("LIST".utf8) + le32(3) + [1, 2, 3, 0] // an odd chunk before the data, padded
        out += Array("data".utf8) + le32(streamingSize ? 0xFFFF_FFFF : data)
        return out + [UInt8](repeating: 0, count: Int(data))
    }

    @Test func audioSecondsOfAWAVUpload() {
        let type = "multipart/form-data; boundary=XyZ123"
        let form = multipartForm(boundary: "XyZ123", fields: [("model", "w")], file: wav(seconds: 2.5), fileAt: 1)
        #expect(abs((WorkUnits.audioSeconds(form: form, contentType: type, totalLength: form.count) ?? 0) - 2.5) < 0.001)
        // Only the start of the upload has arrived: the header says it all.
        #expect(abs((WorkUnits.audioSeconds(form: Array(form.prefix(600)), contentType: type, totalLength: form.count) ?? 0) - 2.5) < 0.001)
        // Not yet: the file's header has not arrived (the proxy waits for it, up to 64 KiB).
        #expect(WorkUnits.audioSeconds(form: Array(form.prefix(120)), contentType: type, totalLength: form.count) == nil)
        // A streamed WAV (size unknown in its header): from the upload's length.
        let streamed = multipartForm(boundary: "XyZ123", fields: [("model", "w")], file: wav(seconds: 3, streamingSize: true), fileAt: 1)
        let seconds = WorkUnits.audioSeconds(form: Array(streamed.prefix(600)), contentType: type, totalLength: streamed.count) ?? 0
        #expect(seconds > 2.99 && seconds < 3.01, "\(seconds)")
        // Not a WAV, or no length to go by: not known.
        let mp3 = multipartForm(boundary: "XyZ123", fields: [("model", "w")], file: Array("ID3\u{3}garbage".utf8) + [UInt8](repeating: 1, count: 100), fileAt: 1)
        #expect(WorkUnits.audioSeconds(form: mp3, contentType: type, totalLength: mp3.count) == 0)
        #expect(WorkUnits.audioSeconds(form: Array(streamed.prefix(600)), contentType: type, totalLength: nil) == 0)
        #expect(WorkUnits.audioSeconds(form: form, contentType: nil, totalLength: form.count) == 0)
    }

    @Test func unitsOfJSONJobs() {
        func units(_ body: String, _ endpoint: Endpoint) -> Double { WorkUnits.json(Array(body.utf8), endpoint: endpoint) }
        #expect(units(#"{"model":"v","input":"Hello there."}"#, .speech) == 12)
        #expect(units(#"{"model":"sd","prompt":"x","n":2,"size":"512x512"}"#, .imageGenerations) == 0.5)
        #expect(units(#"{"model":"sd","prompt":"x"}"#, .imageGenerations) == 1)
        #expect(units(#"{"model":"sd","prompt":"x","width":2048,"height":1024}"#, .legacyGenerateImage) == 2)
        #expect(units(#"{"model":"sd","prompt":"x","n":1e300,"size":"99999x1"}"#, .imageGenerations) == 1, "absurd numbers are bounded")
        #expect(units(#"{"model":"e","input":["a","b","c"]}"#, .openAIEmbeddings) == 3)
        #expect(units(#"{"model":"e","input":"a"}"#, .embed) == 1)
        #expect(units(#"{"model":"r","query":"q","documents":["a","b"]}"#, .rerank) == 2)
        #expect(units("not json", .speech) == 0)
        #expect(WorkUnits.measures(.speech) && !WorkUnits.measures(.chat) && !WorkUnits.measures(.openAIChat))
    }
}
