import HerdBounds
import Glibc

/// Free and total bytes of the filesystem holding a path (statvfs).
enum DiskSpace {
    static func of(_ path: String) -> (free: Int?, total: Int?) {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return (nil, nil) }
        let block = Int(clamping: s.f_frsize > 0 ? s.f_frsize : s.f_bsize)
        return (Int(clamping: s.f_bavail).multipliedSaturated(by: block), Int(clamping: s.f_blocks).multipliedSaturated(by: block))
    }
}
