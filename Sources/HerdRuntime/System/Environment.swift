#if canImport(Glibc)
import Glibc
#endif

/// Reading `HERD_*` settings from the environment (each flag's twin).
public enum Environment {
    public static func string(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let s = String(cString: value)
        return s.isEmpty ? nil : s
    }

    public static func int(_ name: String) -> Int? { string(name).flatMap { Int($0) } }

    public static func bool(_ name: String) -> Bool {
        guard let s = string(name)?.lowercased() else { return false }
        return s == "1" || s == "true" || s == "yes" || s == "on"
    }
}

/// Where herd keeps its state: `$HERD_DATA_DIR`, else `$XDG_DATA_HOME/herd`,
/// else `~/.local/share/herd` (systemd units set `/var/lib/herd`).
public enum DataDirectory {
    public static func resolve() -> String {
        if let dir = Environment.string("HERD_DATA_DIR") { return dir }
        if let xdg = Environment.string("XDG_DATA_HOME") { return xdg + "/herd" }
        let home = Environment.string("HOME") ?? "/tmp"
        return home + "/.local/share/herd"
    }
}
