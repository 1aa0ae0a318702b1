//! BSD and macOS `kqueue`, as `select.kqueue` drives it for `KqueueSelector`: one read and
//! one write filter per fd, and as many events per wait as there are filters. On Linux with
//! the `libkqueue` feature the same code runs on libkqueue.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::event_queue::{EventQueue, Mechanism};
use super::handle::OsHandle;
use super::{Result, READ, WRITE};
use crate::sys::syscall;
use crate::timeout::{to_timespec, Timeout};
use ffi::{kevent, EVFILT_READ, EVFILT_WRITE, EV_ADD, EV_DELETE};

/// The kqueue API: the C library's on the BSDs and macOS, libkqueue's on Linux. The casts are
/// no-ops on FreeBSD and macOS but not on NetBSD, whose libc types differ.
#[allow(clippy::unnecessary_cast)]
mod ffi {
    #[cfg(not(libkqueue))]
    pub use libc::{kevent, kqueue};
    #[cfg(not(libkqueue))]
    pub const EVFILT_READ: i16 = libc::EVFILT_READ as i16;
    #[cfg(not(libkqueue))]
    pub const EVFILT_WRITE: i16 = libc::EVFILT_WRITE as i16;
    #[cfg(not(libkqueue))]
    pub const EV_ADD: u16 = libc::EV_ADD as u16;
    #[cfg(not(libkqueue))]
    pub const EV_DELETE: u16 = libc::EV_DELETE as u16;

    /// libkqueue's `<kqueue/sys/event.h>`: the classic BSD `struct kevent`.
    #[cfg(libkqueue)]
    #[allow(non_camel_case_types)]
    #[derive(Clone, Copy)]
    #[repr(C)]
    pub struct kevent {
        pub ident: libc::uintptr_t,
        pub filter: libc::c_short,
        pub flags: libc::c_ushort,
        pub fflags: libc::c_uint,
        pub data: libc::intptr_t,
        pub udata: *mut libc::c_void,
    }
    #[cfg(libkqueue)]
    extern "C" {
        pub fn kqueue() -> libc::c_int;
        pub fn kevent(
            kq: libc::c_int,
            changelist: *const kevent,
            nchanges: libc::c_int,
            eventlist: *mut kevent,
            nevents: libc::c_int,
            timeout: *const libc::timespec,
        ) -> libc::c_int;
    }
    #[cfg(libkqueue)]
    pub const EVFILT_READ: i16 = -1;
    #[cfg(libkqueue)]
    pub const EVFILT_WRITE: i16 = -2;
    #[cfg(libkqueue)]
    pub const EV_ADD: u16 = 0x0001;
    #[cfg(libkqueue)]
    pub const EV_DELETE: u16 = 0x0002;
}

/// A kevent the wait may hand to another thread. A `kevent` carries a `udata` pointer, which
/// makes it `!Send`; we never set or read that pointer.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Kevent(kevent);

// SAFETY: the only pointer in a kevent is `udata`, which this module leaves null and never
// dereferences.
unsafe impl Send for Kevent {}

/// A kqueue selector's backend.
pub type Kqueue = EventQueue<KqueueFilters>;

/// The filters each fd's registration added, to delete them again.
pub struct KqueueFilters {
    /// fd -> the filters its registration asked for.
    interest: HashMap<u64, u8>,
    /// Filters added, as the stdlib counts them (`_max_events`): the wait's event capacity.
    filters: usize,
}

/// A change for `fd`. Its ident is a `uintptr_t`, so any fd number that fits goes to the
/// kernel, which refuses one that is not open, as `select.kevent(fd)` does.
fn kevent_for(fd: u64, filter: i16, flags: u16) -> kevent {
    // SAFETY: kevent is a plain C struct for which all-zero bytes (null udata) are valid.
    let mut event: kevent = unsafe { std::mem::zeroed() };
    event.ident = fd as libc::uintptr_t;
    event.filter = filter as _;
    event.flags = flags as _;
    event
}

impl Kqueue {
    pub fn new() -> io::Result<Self> {
        let fd = syscall!(ffi::kqueue())?;
        // SAFETY: kqueue just returned this fd and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // Like select.kqueue(), keep it out of child processes.
        syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
        let filters = KqueueFilters {
            interest: HashMap::new(),
            filters: 0,
        };
        Ok(EventQueue::with_fd(owned, filters))
    }
}

/// `kq.control([kevent(fd, filter, flags)], 0, 0)`.
fn change(kqueue: &OsHandle, fd: u64, filter: i16, flags: u16) -> Result<()> {
    let kq = kqueue.raw()?;
    let change = kevent_for(fd, filter, flags);
    let no_wait = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    syscall!(ffi::kevent(
        kq,
        &change,
        1,
        std::ptr::null_mut(),
        0,
        &no_wait
    ))?;
    Ok(())
}

const FILTERS: [(u8, i16); 2] = [(READ, EVFILT_READ), (WRITE, EVFILT_WRITE)];

impl Mechanism for KqueueFilters {
    type Event = Kevent;
    const NAME: &'static str = "kqueue";

    /// Adds the read filter, then the write filter. As in the stdlib, a failure on the
    /// second leaves the first in place (and counted).
    fn add(&mut self, kqueue: &OsHandle, fd: u64, interest: u8) -> Result<()> {
        kqueue.raw()?;
        for (bit, filter) in FILTERS {
            if interest & bit != 0 {
                change(kqueue, fd, filter, EV_ADD)?;
                self.filters += 1;
            }
        }
        // KqueueSelector.register adds the read and the write filter one at a time.
        *self.interest.entry(fd).or_insert(0) |= interest;
        Ok(())
    }

    fn modify(&mut self, kqueue: &OsHandle, fd: u64, interest: u8) -> Result<()> {
        self.remove(kqueue, fd)?;
        self.add(kqueue, fd, interest)
    }

    /// Deletes the filters the registration asked for; the kernel may have dropped them
    /// already (the fd was closed), which is not an error here.
    fn remove(&mut self, kqueue: &OsHandle, fd: u64) -> Result<()> {
        let interest = self.interest.remove(&fd).unwrap_or(0);
        for (bit, filter) in FILTERS {
            if interest & bit != 0 {
                self.filters = self.filters.saturating_sub(1);
                let _ = change(kqueue, fd, filter, EV_DELETE);
            }
        }
        Ok(())
    }

    /// As many events as there are filters, as the stdlib asks for.
    fn wait_capacity(&self, _registered: usize) -> usize {
        self.filters
    }

    fn wait_raw(
        kq: RawFd,
        events: &mut [MaybeUninit<Kevent>],
        timeout: Timeout,
    ) -> io::Result<usize> {
        let ts = timeout.map(to_timespec);
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
        // `Kevent` is a transparent wrapper, so the buffer is one of `kevent`s.
        let n = syscall!(ffi::kevent(
            kq,
            std::ptr::null(),
            0,
            events.as_mut_ptr().cast::<kevent>(),
            events.len() as libc::c_int,
            ts_ptr,
        ))?;
        Ok(n as usize)
    }

    /// One report per kevent, so an fd ready both ways appears twice, as in the stdlib.
    fn ready(event: &Kevent) -> (u64, u8) {
        #[allow(clippy::unnecessary_cast)]
        let filter = event.0.filter as i16;
        let events = FILTERS
            .iter()
            .find(|(_, f)| *f == filter)
            .map_or(0, |(bit, _)| *bit);
        (event.0.ident as u64, events)
    }
}
