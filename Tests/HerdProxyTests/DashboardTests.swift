import Glibc
import HerdJSON
import HerdTestSupport
import Testing

/// The dashboard in headless Chromium against a live fleet: every view loads
/// with no console error and shows the fleet's nodes, models, requests and
/// checks; each view's screenshot is taken (HERD_SCREENSHOTS=DIR keeps them).
@Suite(.serialized) struct DashboardTests {
    static let views: [(name: String, ready: String)] = [
        ("fleet", "document.querySelectorAll('article.node').length === 2 && document.body.innerText.includes('llama3:8b')"),
        ("models", "document.body.innerText.includes('mistral:7b') && document.body.innerText.includes('qwen:7b') "
            + "&& document.querySelector('#benchmarks') !== null && document.querySelector('#benchmarks').innerText.includes('bench-box')"),
        ("routing", "document.querySelectorAll('main tbody tr').length > 0"),
        ("requests", "document.querySelectorAll('main tbody tr.clickable').length >= 7"),
        ("apps", "document.body.innerText.includes('notes-app') && document.body.innerText.includes('code-helper')"),
        ("capacity", "document.querySelectorAll('.heat').length === 2"),
        ("health", "document.querySelectorAll('.check').length >= 25"),
        ("settings", "document.body.innerText.includes('scheduler.queue_timeout_ms')"),
        ("keys", "document.body.innerText.includes('No keys yet')"),
    ]

    @Test func everyViewLoadsWithNoConsoleErrorAndShowsTheFleet() throws {
        let fleet = try RouterTests.twoNodeFleet()
        defer { fleet.shutdown() }
        for i in 0..<6 {
            let tag = i % 2 == 0 ? "notes-app" : "code-helper"
            #expect(fleet.post("/api/chat", #"{"model":"\#(i % 2 == 0 ? "llama3:8b" : "mistral:7b")","stream":false,"messages":[]}"#,
                               headers: ["X-Herd-Tags": tag]).status == 200)
        }
        #expect(fleet.post("/api/chat", #"{"model":"nope:1b"}"#).status == 404)
        let benchmark = #"{"results":[{"node":"bench-box","model":"llama3:8b","steps":[{"concurrency":1,"requests":4,"per_second":50,"ttft_ms":40},{"concurrency":2,"requests":8,"per_second":95,"ttft_ms":45}]}]}"#
        #expect(fleet.request("POST", "/api/v1/benchmarks", body: benchmark, headers: [:], port: fleet.controlPort).status == 201)
        #expect(waitUntil(seconds: 5) { ((try? JSONValue.parse(fleet.getControl("/api/v1/traces").body))?["traces"]?.arrayValue?.count ?? 0) >= 7 })

        let screens = ProcessInfoLite.environment("HERD_SCREENSHOTS") ?? fleet.dataDirectory + "/screenshots"
        mkdir(screens, 0o755)
        let browser = try HeadlessChromium(directory: fleet.dataDirectory)
        defer { browser.close() }
        let base = "http://127.0.0.1:\(fleet.controlPort)/"
        for view in Self.views {
            try browser.navigate(base + "#" + view.name)
            #expect(browser.waitFor(view.ready, seconds: 15), "\(view.name) did not show the fleet: \((try? browser.evaluate("document.body.innerText"))?.stringValue ?? "")")
            #expect(try browser.evaluate("document.querySelector('#tabs a.active').dataset.view") == .string(view.name))
            #expect(try browser.screenshot(to: "\(screens)/\(view.name).png") > 10_000)
        }
        // Live: the event stream is open and says so.
        #expect(browser.waitFor("document.getElementById('live').textContent === 'live'"))
        // A trace opens whole on click, with its candidates.
        try browser.navigate(base + "#requests")
        #expect(browser.waitFor("document.querySelectorAll('main tbody tr.clickable').length >= 7"))
        _ = try browser.evaluate("document.querySelector('main tbody tr.clickable').click()")
        #expect(browser.waitFor("document.querySelector('#trace-detail pre') !== null"))
        // Models: pull a model to node-b with the form, its progress shown; delete one with its button.
        try browser.navigate(base + "#models")
        #expect(browser.waitFor("document.getElementById('pull-button') !== null"))
        _ = try browser.evaluate("document.getElementById('pull-node').value = 'node-b'; document.getElementById('pull-model').value = 'qwen3:0.6b'; document.getElementById('pull-button').click()")
        #expect(browser.waitFor("document.getElementById('model-status').textContent === 'node-b: qwen3:0.6b pulled'"),
                "\((try? browser.evaluate("document.getElementById('model-status').textContent")) ?? .null)")
        #expect(fleet.backendRequests("B", path: "/api/pull") == 1 && fleet.backendRequests("A", path: "/api/pull") == 0)
        #expect(browser.waitFor("[...document.querySelectorAll('main button')].some(b => b.getAttribute('aria-label') === 'delete mistral:7b from node-b')", seconds: 15))
        _ = try browser.evaluate("window.confirm = () => true; [...document.querySelectorAll('main button')].find(b => b.getAttribute('aria-label') === 'delete mistral:7b from node-b').click()")
        #expect(browser.waitFor("document.getElementById('model-status').textContent === 'node-b: mistral:7b deleted'"))
        #expect(fleet.backendRequests("B", path: "/api/delete") == 1)
        try browser.screenshot(to: screens + "/models-managed.png")
        // Settings: drain a node with its button, then resume it.
        try browser.navigate(base + "#settings")
        #expect(browser.waitFor("[...document.querySelectorAll('button')].some(b => b.textContent === 'Drain')"))
        _ = try browser.evaluate("[...document.querySelectorAll('main tr')].find(r => r.innerText.includes('node-a')).querySelector('button').click()")
        #expect(browser.waitFor("document.getElementById('action-status').textContent.startsWith('node-a: drain')"))
        #expect(try JSONValue.parse(fleet.getControl("/api/v1/nodes/node-a").body)["hold"]?.stringValue == "drain")
        #expect(browser.waitFor("document.body.innerText.includes('drained')"))
        try browser.screenshot(to: screens + "/settings-drained.png")
        // The health view shows the check it fires, with its advice.
        try browser.navigate(base + "#health")
        #expect(browser.waitFor("document.querySelector('#check-node_held.sev-info .advice') !== null", seconds: 15))
        try browser.screenshot(to: screens + "/health-firing.png")
        try browser.navigate(base + "#settings")
        #expect(browser.waitFor("[...document.querySelectorAll('main tr')].some(r => r.innerText.includes('node-a') && r.querySelector('button.primary:not([disabled])'))"))
        _ = try browser.evaluate("[...document.querySelectorAll('main tr')].find(r => r.innerText.includes('node-a')).querySelector('button.primary').click()")
        #expect(waitUntil(seconds: 5) { (try? JSONValue.parse(fleet.getControl("/api/v1/nodes/node-a").body))?["hold"] == .null })
        // Keys: make one with the form (its secret shown once, and it works at the proxy), then revoke it.
        try browser.navigate(base + "#keys")
        #expect(browser.waitFor("document.getElementById('key-name') !== null"))
        _ = try browser.evaluate("document.getElementById('key-name').value = 'web-app'; document.getElementById('key-rpm').value = '30'; [...document.querySelectorAll('main button')].find(b => b.textContent === 'Make key').click()")
        #expect(browser.waitFor("(document.getElementById('keys-secret') || {}).textContent?.includes('herd_')"),
                "\((try? browser.evaluate("document.body.innerText")) ?? .null)")
        let shown = try browser.evaluate("document.getElementById('keys-secret').textContent").stringValue ?? ""
        let secret = String(shown.split(separator: " ").last ?? "")
        #expect(secret.hasPrefix("herd_") && waitUntil(seconds: 5) {
            fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"messages":[]}"#, headers: ["Authorization": "Bearer \(secret)"])
                .header("X-Herd-Node") != nil
        })
        #expect(browser.waitFor("document.body.innerText.includes('30 req/min')"))
        try browser.screenshot(to: screens + "/keys.png")
        _ = try browser.evaluate("window.confirm = () => true; [...document.querySelectorAll('main button')].find(b => b.getAttribute('aria-label') === 'revoke web-app').click()")
        #expect(browser.waitFor("document.body.innerText.includes('No keys yet')"))
        #expect(waitUntil(seconds: 2) {
            fleet.post("/api/chat", #"{"model":"llama3:8b","stream":false,"messages":[]}"#, headers: ["Authorization": "Bearer \(secret)"]).status == 401
        })
        // A phone: nothing wider than the screen.
        try browser.call("Emulation.setDeviceMetricsOverride", ["width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true])
        try browser.navigate(base + "#fleet")
        #expect(browser.waitFor(Self.views[0].ready))
        #expect(try browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth") == .bool(true))
        try browser.screenshot(to: screens + "/fleet-phone.png")
        // Dark.
        try browser.call("Emulation.setEmulatedMedia", ["features": [["name": "prefers-color-scheme", "value": "dark"]]])
        try browser.call("Emulation.clearDeviceMetricsOverride")
        try browser.navigate(base + "#health")
        #expect(browser.waitFor(Self.views[6].ready), "\((try? browser.evaluate("location.hash + ' ' + document.body.innerText.slice(0, 300)")) ?? .null)")
        #expect(try browser.evaluate("getComputedStyle(document.body).backgroundColor") != .string("rgb(246, 245, 241)"))
        try browser.screenshot(to: screens + "/health-dark.png")
        browser.drainEvents()
        #expect(browser.errors.isEmpty, "console: \(browser.errors)")
    }
}

/// getenv as a String.
enum ProcessInfoLite {
    static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}
