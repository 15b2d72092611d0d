import HerdHTTP
import HerdWire

/// The dashboard's files (`Sources/herd-control/Dashboard`, embedded at build
/// time by the EmbedDashboard plugin), served at `/`, with an ETag each and a
/// policy that lets the page load nothing from anywhere but this server.
struct Dashboard {
    struct Asset {
        let type: String
        let body: [UInt8]
        let etag: String
    }

    private let assets: [String: Asset]

    init(files: [(name: String, type: String, text: String)] = DashboardAssets.files) {
        var assets: [String: Asset] = [:]
        for file in files {
            let body = Array(file.text.utf8)
            let asset = Asset(type: file.type, body: body, etag: "\"" + String(ContentHash(of: body).value, radix: 16) + "\"")
            assets["/" + file.name] = asset
            if file.name == "index.html" { assets["/"] = asset }
        }
        self.assets = assets
    }

    static let securityHeaders: [(String, String)] = [
        ("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]

    /// Answers a GET or HEAD for one of the files; false when `path` is none of them.
    func serve(_ exchange: HTTPExchange, path: Substring) -> Bool {
        guard let asset = assets[String(path)] else { return false }
        var headers: HTTPHeaders = ["Content-Type": asset.type, "Cache-Control": "no-cache", "ETag": asset.etag]
        for (name, value) in Self.securityHeaders { headers.add(name, value) }
        if exchange.head.headers["If-None-Match"] == asset.etag {
            exchange.respond(status: 304, headers: headers)
        } else {
            exchange.respond(status: 200, headers: headers, body: exchange.head.method == "HEAD" ? [] : asset.body)
        }
        return true
    }
}
