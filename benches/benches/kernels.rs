//! Page-verify kernels: one native page verified, per checksum algorithm and page size.
//! `cargo bench -p dbfsck-bench --bench kernels`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dbfsck_core::native::{
    encode_page, verify_page, ChecksumAlgo, FileParams, PageMeta, PageVerdict,
};

fn page(page_size: usize, algo: ChecksumAlgo) -> Vec<u8> {
    let mut rng = dbfsck_testkit::rng(1);
    let mut body = vec![0u8; page_size - 48];
    dbfsck_testkit::fill_random(&mut rng, &mut body);
    let meta = PageMeta {
        page_type: 0x100,
        flags: 0,
        file_id: 7,
        page_no: 3,
        lsn: 99,
    };
    let mut p = vec![0u8; page_size];
    encode_page(&mut p, &meta, &body, algo).expect("valid page");
    p
}

fn kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_page");
    for algo in [ChecksumAlgo::Crc32, ChecksumAlgo::Xxh3] {
        for page_size in [4096usize, 8192, 16384, 65536] {
            let p = page(page_size, algo);
            let params = FileParams {
                page_size,
                algo,
                file_id: 7,
            };
            assert!(matches!(
                verify_page(&p, &params, 3),
                PageVerdict::Ok { .. }
            ));
            g.throughput(Throughput::Bytes(page_size as u64));
            g.bench_with_input(BenchmarkId::new(algo.name(), page_size), &p, |b, p| {
                b.iter(|| verify_page(std::hint::black_box(p), &params, 3))
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("checksum");
    let data = page(65536, ChecksumAlgo::Xxh3);
    g.throughput(Throughput::Bytes(data.len() as u64));
    for algo in [ChecksumAlgo::Crc32, ChecksumAlgo::Xxh3] {
        g.bench_function(algo.name(), |b| {
            b.iter(|| algo.compute(std::hint::black_box(&data)))
        });
    }
    g.finish();
    // PostgreSQL's page checksum: one page a pass against several (issue 17).
    let mut g = c.benchmark_group("pg_checksum");
    let pages: Vec<Vec<u8>> = (0..dbfsck_core::postgres::PAGES_PER_PASS)
        .map(|k| {
            page(8192, ChecksumAlgo::Xxh3)
                .into_iter()
                .map(|b| b ^ k as u8)
                .collect()
        })
        .collect();
    let refs: [&[u8]; dbfsck_core::postgres::PAGES_PER_PASS] =
        std::array::from_fn(|k| pages[k].as_slice());
    g.throughput(Throughput::Bytes((8192 * refs.len()) as u64));
    g.bench_function("one_page_a_pass", |b| {
        b.iter(|| refs.map(|p| dbfsck_core::postgres::pg_checksum_page(std::hint::black_box(p), 3)))
    });
    g.bench_function("pages_per_pass", |b| {
        b.iter(|| dbfsck_core::postgres::pg_checksum_pages(std::hint::black_box(&refs), [3; 4]))
    });
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
