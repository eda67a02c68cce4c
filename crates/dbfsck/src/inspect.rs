//! `dbfsck inspect FILE --page N`: prints what the library's `inspect` returns.

use std::io::{self, Write};
use std::process::ExitCode;

use dbfsck_core::native::journal::images_in_dir;
use dbfsck_core::{exit, Inspection, Scanner};

use crate::{code, InspectArgs};

/// `dbfsck inspect TABLE --blocks`: one line per block of a RocksDB or LevelDB table.
fn blocks(args: &InspectArgs) -> ExitCode {
    use dbfsck_core::lsm::table::Engine;
    let engine = match (
        args.format.as_str(),
        args.file.extension().and_then(|e| e.to_str()),
    ) {
        ("leveldb", _) | ("auto", Some("ldb")) => Engine::Leveldb,
        ("rocksdb", _) | ("auto", _) => Engine::Rocksdb,
        (other, _) => {
            eprintln!("dbfsck: --blocks lists the blocks of a rocksdb or leveldb table, not of a {other} file");
            return code(exit::USAGE);
        }
    };
    let list = match dbfsck_core::lsm::sst::block_list(&args.file, engine) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dbfsck: {}: {e}", args.file.display());
            return code(exit::OPERATIONAL);
        }
    };
    let out = io::stdout();
    let mut out = out.lock();
    let bad = list.iter().filter(|b| b.mismatch.is_some()).count();
    let _ = writeln!(
        out,
        "{}: {} blocks, {bad} failing their checksum",
        args.file.display(),
        list.len()
    );
    for b in &list {
        let what = match b.ordinal {
            Some(n) => format!("data {n}"),
            None => b.kind.to_owned(),
        };
        let verdict = match b.mismatch {
            None => "ok".to_owned(),
            Some((s, c)) => format!("checksum_mismatch (stored {s:#010x}, computed {c:#010x})"),
        };
        let _ = writeln!(
            out,
            "  {what:<18} @{:<12} +{:<8} {verdict}",
            b.offset, b.size
        );
    }
    code(if bad > 0 { exit::DAMAGE_LEFT } else { exit::OK })
}

pub fn run(args: &InspectArgs) -> ExitCode {
    if args.blocks {
        return blocks(args);
    }
    let scanner = match Scanner::new().format(Some(&args.format)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dbfsck: {e}");
            return code(exit::USAGE);
        }
    };
    let forced = scanner
        .formats()
        .iter()
        .find(|f| f.name() == args.format)
        .cloned();
    let page = match (&args.lsn, args.page) {
        (Some(lsn), _) => match dbfsck_core::postgres::page_of_lsn(&args.file, lsn) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("dbfsck: {}: {e}", args.file.display());
                return code(exit::USAGE);
            }
        },
        (None, Some(p)) => p,
        (None, None) => 0,
    };
    let i = match dbfsck_core::inspect(&args.file, page, scanner.formats(), forced.as_ref()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("dbfsck: {}: {e}", args.file.display());
            return code(exit::OPERATIONAL);
        }
    };
    let out = io::stdout();
    let mut out = out.lock();
    let _ = print(&mut out, args, &i);
    code(if i.findings.iter().any(|f| f.kind.is_damage()) {
        exit::DAMAGE_LEFT
    } else {
        exit::OK
    })
}

fn print(out: &mut impl Write, args: &InspectArgs, i: &Inspection) -> io::Result<()> {
    writeln!(
        out,
        "{} page {} ({} format, bytes {}..{})",
        args.file.display(),
        i.unit,
        i.format,
        i.offset,
        i.offset + i.bytes.len() as u64
    )?;
    for (k, v) in &i.fields {
        writeln!(out, "  {k:<24} {v}")?;
    }
    if i.findings.is_empty() && !i.fields.iter().any(|(k, _)| k == "verdict") {
        writeln!(out, "  verdict                  valid")?;
    }
    for f in &i.findings {
        writeln!(out, "  verdict                  {}: {}", f.kind, f.detail)?;
    }
    // The newest committed journal image of this page, when a journal beside the file has one.
    let file_id = i
        .fields
        .iter()
        .find(|(k, _)| k == "file_id")
        .and_then(|(_, v)| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok());
    let dir = args.file.parent().filter(|p| !p.as_os_str().is_empty());
    let image = match (i.format, file_id, dir) {
        ("native", Some(id), Some(dir)) => images_in_dir(dir, id, i.unit).pop(),
        _ => None,
    };
    match &image {
        Some((path, img, _)) => writeln!(
            out,
            "  journal image            {} (batch {}, LSN {}, byte {}); differing lines marked",
            path.display(),
            img.batch,
            img.lsn,
            img.offset
        )?,
        None if i.format == "native" => writeln!(out, "  journal image            none")?,
        None => {}
    }
    writeln!(out)?;
    hexdump(out, &i.bytes, image.as_ref().map(|(_, _, b)| b.as_slice()))
}

/// 16 bytes a line, runs of identical lines folded to `*` as `hexdump -C` does; with an image,
/// every line that differs from it is followed by the image's line, marked `journal`.
fn hexdump(out: &mut impl Write, bytes: &[u8], image: Option<&[u8]>) -> io::Result<()> {
    let mut previous: Option<&[u8]> = None;
    let mut folded = false;
    for (n, line) in bytes.chunks(16).enumerate() {
        let other = image.and_then(|img| img.get(n * 16..(n * 16 + 16).min(img.len())));
        let differs = other.is_some_and(|o| o != line);
        if previous == Some(line) && !differs {
            if !folded {
                writeln!(out, "*")?;
                folded = true;
            }
            continue;
        }
        folded = false;
        previous = Some(line);
        writeln!(
            out,
            "{}",
            hex_line(n * 16, line, if differs { "page   " } else { "" })
        )?;
        if let (true, Some(o)) = (differs, other) {
            writeln!(out, "{}", hex_line(n * 16, o, "journal"))?;
        }
    }
    writeln!(out, "{:08x}", bytes.len())
}

fn hex_line(offset: usize, line: &[u8], tag: &str) -> String {
    let mut s = format!("{offset:08x}  ");
    for (k, b) in line.iter().enumerate() {
        s.push_str(&format!("{b:02x} "));
        if k == 7 {
            s.push(' ');
        }
    }
    let ascii: String = line
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    format!("{s:<60}|{ascii}| {tag}").trim_end().to_owned()
}
