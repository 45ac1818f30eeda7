//! Codec benchmark: encode+split and decode of a 300-character Chinese greeting
//! (5 UCS2 parts), the common case of a holiday campaign. Figures and their ratio
//! to the modem-bound limit are in docs/benchmarks.md.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smsgw::pdu::{self, Layout, SubmitOptions};
use std::hint::black_box;

fn greeting() -> String {
    let line = "尊敬的客户您好，值此中秋佳节来临之际，祝您和家人身体健康、阖家幸福、万事如意！";
    let mut s = String::new();
    while s.chars().count() < 300 {
        s.push_str(line);
    }
    s.chars().take(300).collect()
}

fn bench(c: &mut Criterion) {
    let text = greeting();
    let opts = SubmitOptions {
        request_report: true,
        ..Default::default()
    };
    let parts = pdu::encode_submit("+8613800138000", &text, &opts).unwrap();
    assert_eq!(parts.len(), 5);
    let pdus: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| pdu::from_hex(&p.pdu).unwrap())
        .collect();

    let mut g = c.benchmark_group("chinese_greeting_300_chars");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_and_split", |b| {
        b.iter(|| pdu::encode_submit(black_box("+8613800138000"), black_box(&text), &opts).unwrap())
    });
    g.bench_function("decode_all_parts", |b| {
        b.iter(|| {
            for p in &pdus {
                black_box(pdu::decode(black_box(p), Layout::WithSmsc).unwrap());
            }
        })
    });
    g.finish();

    let report =
        pdu::from_hex("079124603050020006E80C91666666666666909070618422809090706184628000")
            .unwrap();
    c.bench_function("decode_status_report", |b| {
        b.iter(|| pdu::decode(black_box(&report), Layout::Auto).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
