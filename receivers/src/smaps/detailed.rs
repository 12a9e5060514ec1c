//! `detailed: true`: full `/proc/PID/smaps` broken down by mapping class (heap, stack,
//! anonymous, file, shmem, vdso), plus the `top_files` files with the largest Pss.
//!
//! The parse does not allocate: per mapping it adds to six class totals and, for a
//! mapping with a file path, records the path as a range of the smaps buffer in a `Vec`
//! reused across processes. Consecutive mappings of one file (the text, rodata and data
//! segments of a library) are merged as they come; the rest are merged after a sort by
//! path, and only the top N by Pss are kept.

use std::ops::Range;

use super::parse::{self, MappingClass};
use crate::cgroup::emit::ResourceBuilder;

/// Sums over the mappings of one class, in bytes (`count` in mappings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassTotals {
    pub rss: u64,
    pub pss: u64,
    pub swap: u64,
    pub count: u64,
}

/// One file's mappings summed: its path as a range of the smaps buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub path: Range<usize>,
    pub pss: u64,
    pub rss: u64,
}

/// The breakdown of one process; `files` holds the top files by Pss, largest first.
#[derive(Default)]
pub struct Breakdown {
    pub classes: [ClassTotals; 6],
    pub files: Vec<FileEntry>,
}

impl Breakdown {
    /// Parses `data` (full smaps) into class totals and the `top_files` largest files.
    /// Reuses `self.files`' allocation.
    pub fn parse(&mut self, data: &[u8], top_files: usize) {
        self.classes = [ClassTotals::default(); 6];
        self.files.clear();
        let classes = &mut self.classes;
        let files = &mut self.files;
        parse::for_each_mapping(data, |mapping| {
            let class = MappingClass::of(mapping.perms, mapping.path);
            let totals = &mut classes[class.index()];
            totals.rss = totals.rss.saturating_add(mapping.rss);
            totals.pss = totals.pss.saturating_add(mapping.pss);
            totals.swap = totals.swap.saturating_add(mapping.swap);
            totals.count += 1;
            let named_file = matches!(class, MappingClass::File | MappingClass::Shmem)
                && mapping.path.first() == Some(&b'/');
            if top_files == 0 || !named_file {
                return;
            }
            let path = mapping.path_offset..mapping.path_offset + mapping.path.len();
            match files.last_mut() {
                Some(last) if data.get(last.path.clone()) == Some(mapping.path) => {
                    last.pss = last.pss.saturating_add(mapping.pss);
                    last.rss = last.rss.saturating_add(mapping.rss);
                }
                _ => files.push(FileEntry {
                    path,
                    pss: mapping.pss,
                    rss: mapping.rss,
                }),
            }
        });
        if files.len() > 1 {
            // A file mapped again further on (a re-opened library, two mmaps of one data
            // file): merge every mapping of a path into one entry.
            let path_of = |e: &FileEntry| data.get(e.path.clone()).unwrap_or_default();
            files.sort_unstable_by(|a, b| path_of(a).cmp(path_of(b)));
            let mut kept = 0;
            for i in 1..files.len() {
                if path_of(&files[i]) == path_of(&files[kept]) {
                    let (pss, rss) = (files[i].pss, files[i].rss);
                    files[kept].pss = files[kept].pss.saturating_add(pss);
                    files[kept].rss = files[kept].rss.saturating_add(rss);
                } else {
                    kept += 1;
                    files.swap(kept, i);
                }
            }
            files.truncate(kept + 1);
            let order = |a: &FileEntry, b: &FileEntry| {
                b.pss.cmp(&a.pss).then_with(|| path_of(a).cmp(path_of(b)))
            };
            if files.len() > top_files {
                files.select_nth_unstable_by(top_files - 1, order);
                files.truncate(top_files);
            }
            files.sort_unstable_by(order);
        }
    }

    /// Emits the breakdown of `data` (the buffer [`Breakdown::parse`] read) as
    /// `process.smaps.mapping.*{mapping.class}` and `process.smaps.file.*{file.path}`.
    pub fn emit(&self, data: &[u8], builder: &mut ResourceBuilder) {
        type Field = fn(&ClassTotals) -> u64;
        let fields: [(&str, &'static str, Field); 4] = [
            ("process.smaps.mapping.rss", "By", |t| t.rss),
            ("process.smaps.mapping.pss", "By", |t| t.pss),
            ("process.smaps.mapping.swap", "By", |t| t.swap),
            ("process.smaps.mapping.count", "{mapping}", |t| t.count),
        ];
        for (name, unit, field) in fields {
            for class in MappingClass::ALL {
                let value = i64::try_from(field(&self.classes[class.index()])).unwrap_or(i64::MAX);
                builder.gauge_int(name, unit, value, &[("mapping.class", class.name())]);
            }
        }
        type FileField = fn(&FileEntry) -> u64;
        let file_fields: [(&str, FileField); 2] = [
            ("process.smaps.file.pss", |f| f.pss),
            ("process.smaps.file.rss", |f| f.rss),
        ];
        for (name, field) in file_fields {
            for file in &self.files {
                let path = String::from_utf8_lossy(data.get(file.path.clone()).unwrap_or_default());
                builder.gauge_int(
                    name,
                    "By",
                    i64::try_from(field(file)).unwrap_or(i64::MAX),
                    &[("file.path", &path)],
                );
            }
        }
    }
}
