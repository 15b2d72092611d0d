internal import CHerdLinux
#if canImport(Glibc)
import Glibc
#endif

/// The process that started this one.
public enum ParentProcess {
    /// Asks the kernel to send `signal` to this process when its parent dies
    /// (`PR_SET_PDEATHSIG`), so that children never outlive the process that
    /// supervises them. Exits at once when the parent is already gone (it may
    /// have died before the request took effect).
    public static func signalOnDeath(_ signal: Int32) {
        let parent = getppid()
        _ = herd_set_parent_death_signal(signal)
        if parent == 1 || getppid() != parent { exit(0) }
    }
}
