//! BSD and macOS `kqueue`, as `select.kqueue` drives it for `KqueueSelector`: one read and
//! one write filter per fd, and as many events per wait as there are filters. On Linux with
//! the `libkqueue` feature the same code runs on libkqueue.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::handle::{Lent, OsHandle};
use super::{Backend, Result, Wait, READ, WRITE};
use crate::sys::{syscall, to_raw_fd};
use crate::timeout::Timeout;
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

/// An event buffer. A `kevent` carries a `udata` pointer, which makes it `!Send`; we never set
/// or read that pointer, so the buffer can move to the waiting thread.
struct Events(Vec<kevent>);

// SAFETY: the only pointer in a kevent is `udata`, which this module leaves null and never
// dereferences.
unsafe impl Send for Events {}

pub struct Kqueue {
    /// Lent to waits in flight, so `close()` never frees what a wait still uses.
    kq: OsHandle,
    spare: Events,
    /// fd -> the filters its registration asked for, to delete them again.
    interest: HashMap<u64, u8>,
    /// Filters added, as the stdlib counts them (`_max_events`): the wait's event capacity.
    filters: usize,
}

fn kevent_for(fd: RawFd, filter: i16, flags: u16) -> kevent {
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
        Ok(Kqueue {
            kq: OsHandle::new("kqueue", owned),
            spare: Events(Vec::new()),
            interest: HashMap::new(),
            filters: 0,
        })
    }

    /// `kq.control([kevent(fd, filter, flags)], 0, 0)`.
    fn change(&self, fd: RawFd, filter: i16, flags: u16) -> Result<()> {
        let kq = self.kq.raw()?;
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
}

const FILTERS: [(u8, i16); 2] = [(READ, EVFILT_READ), (WRITE, EVFILT_WRITE)];

impl Backend for Kqueue {
    type Wait = KqueueWait;

    /// Adds the read filter, then the write filter. As in the stdlib, a failure on the
    /// second leaves the first in place (and counted).
    fn add(&mut self, fd: u64, interest: u8) -> Result<()> {
        let raw = to_raw_fd(fd)?;
        self.kq.raw()?;
        for (bit, filter) in FILTERS {
            if interest & bit != 0 {
                self.change(raw, filter, EV_ADD)?;
                self.filters += 1;
            }
        }
        self.interest.insert(fd, interest);
        Ok(())
    }

    fn modify(&mut self, fd: u64, interest: u8) -> Result<()> {
        self.remove(fd)?;
        self.add(fd, interest)
    }

    /// Deletes the filters the registration asked for; the kernel may have dropped them
    /// already (the fd was closed), which is not an error here.
    fn remove(&mut self, fd: u64) -> Result<()> {
        let interest = self.interest.remove(&fd).unwrap_or(0);
        let raw = to_raw_fd(fd)?;
        for (bit, filter) in FILTERS {
            if interest & bit != 0 {
                self.filters = self.filters.saturating_sub(1);
                let _ = self.change(raw, filter, EV_DELETE);
            }
        }
        Ok(())
    }

    fn begin_wait(&mut self, _max_events: usize) -> Result<KqueueWait> {
        let kq = self.kq.lend()?;
        let max_events = self.filters.clamp(1, libc::c_int::MAX as usize);
        let mut events = std::mem::replace(&mut self.spare, Events(Vec::new()));
        events.0.clear();
        events.0.reserve(max_events);
        Ok(KqueueWait {
            kq,
            events,
            max_events,
            ready: 0,
        })
    }

    fn end_wait(&mut self, wait: KqueueWait) {
        self.kq.give_back(wait.kq);
        if wait.events.0.capacity() > self.spare.0.capacity() {
            self.spare = wait.events;
        }
    }

    fn close(&mut self) {
        self.kq.close();
    }

    fn fileno(&self) -> Option<Result<RawFd>> {
        Some(self.kq.raw())
    }
}

pub struct KqueueWait {
    kq: Lent,
    events: Events,
    max_events: usize,
    ready: usize,
}

impl Wait for KqueueWait {
    fn wait(&mut self, timeout: Timeout) -> io::Result<()> {
        self.ready = 0;
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: d.subsec_nanos() as _,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
        let n = syscall!(ffi::kevent(
            self.kq.fd.as_raw_fd(),
            std::ptr::null(),
            0,
            self.events.0.as_mut_ptr(),
            self.max_events as libc::c_int,
            ts_ptr,
        ))?;
        self.ready = n as usize;
        Ok(())
    }

    /// One report per kevent, so an fd ready both ways appears twice, as in the stdlib.
    fn for_each_ready(&self, f: &mut dyn FnMut(u64, u8)) {
        // SAFETY: kevent() initialised the first `ready` (<= capacity) events.
        let ready = unsafe { std::slice::from_raw_parts(self.events.0.as_ptr(), self.ready) };
        for event in ready {
            #[allow(clippy::unnecessary_cast)]
            let filter = event.filter as i16;
            let events = FILTERS
                .iter()
                .find(|(_, f)| *f == filter)
                .map_or(0, |(bit, _)| *bit);
            f(event.ident as u64, events);
        }
    }
}
