import CLinux
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One thread that waits in `epoll_wait(2)` and runs, in order, socket handlers, timers and work
/// sent from other threads: the serial context of one route.
///
/// A route's events cost one wake-up of its own thread, where a Dispatch queue would add a hand-off
/// from Dispatch's event thread to a worker for every read; with a stanza or two per read, that
/// hand-off was most of the router's CPU.
public final class EventLoop: @unchecked Sendable {
    // @unchecked Sendable: `watchers`, `timers`, `timerHeap` and `running` are touched on the
    // loop's thread only; `incoming` is guarded by its mutex; the descriptors never change.
    public typealias TimerID = UInt64

    private let epoll: Int32
    /// A pipe whose read end wakes the loop when work arrives from another thread.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let incoming = Mutex<[@Sendable () -> Void]>([])
    private let loopThread = Mutex<pthread_t?>(nil)
    private var watchers: [Int32: Watcher] = [:]
    private var timers: [TimerID: (deadline: Instant, handler: () -> Void)] = [:]
    private var timerHeap = DeadlineHeap<TimerID>()
    private var nextTimer: TimerID = 0
    private var running = true

    private struct Watcher {
        var readable: () -> Void
        var writable: () -> Void
        var events: UInt32
    }

    /// Starts the loop's thread.
    public init(name: String) {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        var ends: [Int32] = [-1, -1]
        pipe(&ends)
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = ends[0]
        wakeWrite = ends[1]
        var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(fd: wakeRead))
        epoll_ctl(epoll, EPOLL_CTL_ADD, wakeRead, &event)
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// Whether the caller runs on the loop's thread.
    public var inLoop: Bool {
        loopThread.withLock { thread in thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    /// Runs `work` on the loop's thread, after what is already queued. Any thread.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        let wasEmpty = incoming.withLock { queue in
            queue.append(work)
            return queue.count == 1
        }
        if wasEmpty {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    /// Runs `body` on the loop's thread and waits for its result; inline when already there.
    public func sync<T>(_ body: @escaping () -> T) -> T {
        if inLoop { return body() }
        let box = HandOff(body)
        execute { box.run() }
        return box.wait()
    }

    // MARK: On the loop's thread

    /// Calls `handler` once, `delay` from now. Loop thread only.
    @discardableResult
    public func schedule(after delay: Duration, _ handler: @escaping () -> Void) -> TimerID {
        nextTimer += 1
        let deadline = Instant.now() + delay
        timers[nextTimer] = (deadline, handler)
        timerHeap.push(deadline, nextTimer)
        return nextTimer
    }

    /// Cancels a timer that has not fired; nothing if it has. Loop thread only.
    public func cancel(_ timer: TimerID?) {
        guard let timer else { return }
        timers[timer] = nil
    }

    /// Watches `fd`; the handlers run when it is readable or writable, as `interest` asks.
    public func watch(_ fd: Int32, reading: Bool, writing: Bool,
                      onReadable: @escaping () -> Void, onWritable: @escaping () -> Void) {
        let events = mask(reading: reading, writing: writing)
        watchers[fd] = Watcher(readable: onReadable, writable: onWritable, events: events)
        var event = epoll_event(events: events, data: epoll_data_t(fd: fd))
        epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event)
    }

    /// Changes what `fd` is watched for.
    public func update(_ fd: Int32, reading: Bool, writing: Bool) {
        let events = mask(reading: reading, writing: writing)
        guard let watcher = watchers[fd], watcher.events != events else { return }
        watchers[fd]?.events = events
        var event = epoll_event(events: events, data: epoll_data_t(fd: fd))
        epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event)
    }

    /// Stops watching `fd`; call before closing it.
    public func unwatch(_ fd: Int32) {
        guard watchers.removeValue(forKey: fd) != nil else { return }
        epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
    }

    /// Ends the loop's thread once the work queued before this call has run.
    public func shutdown() {
        execute { [self] in running = false }
    }

    private func mask(reading: Bool, writing: Bool) -> UInt32 {
        (reading ? EPOLLIN.rawValue | EPOLLRDHUP.rawValue : 0) | (writing ? EPOLLOUT.rawValue : 0)
    }

    private func run() {
        loopThread.withLock { $0 = pthread_self() }
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while running {
            let count = epoll_wait(epoll, &events, Int32(events.count), waitMilliseconds())
            if count > 0 {
                for index in 0..<Int(count) { dispatch(events[index]) }
            }
            runDueTimers()
            runIncoming()
        }
        close(epoll)
        close(wakeRead)
        close(wakeWrite)
    }

    private func dispatch(_ event: epoll_event) {
        let fd = event.data.fd
        if fd == wakeRead {
            var drain = [UInt8](repeating: 0, count: 64)
            while read(wakeRead, &drain, drain.count) > 0 {}
            return
        }
        let failed = event.events & (EPOLLERR.rawValue | EPOLLHUP.rawValue | EPOLLRDHUP.rawValue) != 0
        // A handler may unwatch the descriptor: look the watcher up again before each call.
        if event.events & EPOLLOUT.rawValue != 0 || failed, let watcher = watchers[fd],
           watcher.events & EPOLLOUT.rawValue != 0 {
            watcher.writable()
        }
        if event.events & EPOLLIN.rawValue != 0 || failed, let watcher = watchers[fd],
           watcher.events & EPOLLIN.rawValue != 0 {
            watcher.readable()
        }
    }

    private func runIncoming() {
        let work = incoming.withLock { queue in
            let taken = queue
            queue.removeAll()
            return taken
        }
        for item in work { item() }
    }

    private func runDueTimers() {
        let now = Instant.now()
        while let top = timerHeap.first, top.deadline <= now {
            timerHeap.removeFirst()
            guard let timer = timers.removeValue(forKey: top.payload) else { continue }
            timer.handler()
        }
    }

    /// Milliseconds until the next live timer (rounded up), or -1 to wait for events only.
    private func waitMilliseconds() -> Int32 {
        while let top = timerHeap.first, timers[top.payload] == nil { timerHeap.removeFirst() }
        guard let top = timerHeap.first else { return -1 }
        let remaining = top.deadline.since(Instant.now()).nanoseconds
        return Int32(min(Int64(Int32.max), (remaining + 999_999) / 1_000_000))
    }

}

/// Carries work to a loop's thread and its result back to the thread that waits for it.
private final class HandOff<T>: @unchecked Sendable {
    // @unchecked Sendable: `body` is only called, and `result` only written, on the loop's
    // thread before `done` is signalled; the waiting thread reads `result` only after.
    private let body: () -> T
    private var result: T?
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping () -> T) { self.body = body }

    func run() {
        result = body()
        done.signal()
    }

    func wait() -> T {
        done.wait()
        guard let result else { preconditionFailure("EventLoop.sync: the work signalled without a result") }
        return result
    }
}
