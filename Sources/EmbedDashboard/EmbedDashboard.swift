import Foundation
import PackagePlugin

/// Build tool: turns the files of `Sources/herd-control/Dashboard` into a Swift
/// source (`DashboardAssets`) so herd-control serves its dashboard from its
/// own binary: no resource bundle to install, nothing read from disk at run time.
@main
struct EmbedDashboard: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let directory = target.directoryURL.appending(path: "Dashboard")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path()).filter { !$0.hasPrefix(".") }.sorted()
        let inputs = names.map { directory.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "DashboardAssets.swift")
        return [.buildCommand(displayName: "Embedding the dashboard (\(names.count) files)", executable: try context.tool(named: "herd-embed").url,
                              arguments: [output.path()] + inputs.map { $0.path() }, inputFiles: inputs, outputFiles: [output])]
    }
}
