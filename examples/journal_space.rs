//! Where the bytes of a journal store go: per table, bytes stored in leaves, index
//! metadata and fragmentation (page rounding), and for the file, pages in use against
//! its size (the rest are free pages). Used by scripts/bench-journal.sh.
//!
//! `journal_space FILE`: opens FILE for writing (stats need a write transaction,
//! which is aborted), so no manager may be running on it.

use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: journal_space FILE");
        std::process::exit(2);
    };
    let file_bytes = std::fs::metadata(&path)?.len();
    let db = redb::Builder::new().open(&path)?;
    let mb = |b: u64| b as f64 / 1e6;
    {
        let txn = db.begin_read()?;
        println!("table             stored MB  meta MB  fragmented MB  leaf+branch pages");
        for h in txn.list_tables()? {
            let name = h.name().to_owned();
            let t = txn.open_untyped_table(h)?;
            let s = t.stats()?;
            println!(
                "{:<16} {:>10.2} {:>8.2} {:>14.2} {:>10}",
                name,
                mb(s.stored_bytes()),
                mb(s.metadata_bytes()),
                mb(s.fragmented_bytes()),
                s.leaf_pages() + s.branch_pages()
            );
        }
    }
    let txn = db.begin_write()?;
    let s = txn.stats()?;
    let used = s.allocated_pages() * s.page_size() as u64;
    println!(
        "file {:.2} MB: pages in use {:.2} MB (stored {:.2}, metadata {:.2}, fragmented {:.2}), free {:.2} MB",
        mb(file_bytes),
        mb(used),
        mb(s.stored_bytes()),
        mb(s.metadata_bytes()),
        mb(s.fragmented_bytes()),
        mb(file_bytes.saturating_sub(used))
    );
    txn.abort()?;
    Ok(())
}
