//! Round trips through a real file: write synthetic rows, read them back.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use arrow::datatypes::{DataType, TimeUnit};
use parquet::basic::{LogicalType, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::*;
use crate::trace::{
    BlockedIn, FunctionInfo, SchedSplit, SpanEnd, SpanEvent, SpanStart, SpanStatus, ThreadName,
};

/// `CLOCK_REALTIME` − `CLOCK_MONOTONIC` of the synthetic recordings.
const OFFSET: i64 = 1_700_000_000_000_000_000;

fn functions() -> Arc<[FunctionInfo]> {
    Arc::from(vec![
        FunctionInfo {
            name: "app::main".into(),
            module: "/usr/bin/app".into(),
        },
        FunctionInfo {
            name: "app::work<T>".into(),
            module: "/usr/lib/libwork.so".into(),
        },
    ])
}

fn meta() -> RecordingMeta {
    RecordingMeta {
        target: "--pid 1234".into(),
        probes: "app::*, libwork.so:*".into(),
        realtime_offset_ns: OFFSET,
    }
}

fn start(span_id: u64, parent: Option<u64>, depth: u32, function: u32, ts_ns: u64) -> SpanEvent {
    SpanEvent::Start(SpanStart {
        span_id,
        parent_span_id: parent,
        depth,
        pid: 1234,
        tid: 1235,
        thread_name: ThreadName::from("worker"),
        function,
        ts_ns,
        goroutine: None,
        before_attach: false,
    })
}

fn end(
    span_id: u64,
    parent: Option<u64>,
    depth: u32,
    function: u32,
    start_ns: u64,
    ts_ns: u64,
    status: SpanStatus,
) -> SpanEvent {
    SpanEvent::End(SpanEnd {
        span_id,
        parent_span_id: parent,
        depth,
        pid: 1234,
        tid: 1235,
        thread_name: ThreadName::from("worker"),
        function,
        start_ns,
        ts_ns,
        status,
        overhead_ns: 0,
        overhead_outside_ns: 0,
        goroutine: None,
        sched: None,
    })
}

/// A row with every optional column null.
fn row(kind: &str, ts_ns: i64, pid: i32) -> Row {
    Row {
        kind: Some(kind.into()),
        ts_ns: Some(ts_ns),
        time: Some(ts_ns + OFFSET),
        pid: Some(pid),
        tid: None,
        thread_name: None,
        span_id: None,
        parent_span_id: None,
        depth: None,
        function: None,
        module: None,
        start_ns: None,
        duration_ns: None,
        status: None,
        cpu_percent: None,
        rss_bytes: None,
        threads: None,
        extra: [None; super::metric::COUNT],
        stack: None,
        wait: None,
        overhead_ns: None,
        overhead_outside_ns: None,
        goroutine: None,
        stall_group: None,
        cpu_ns: None,
        runnable_ns: None,
        blocked_ns: None,
        blocked_in: None,
    }
}

fn span_row(
    kind: &str,
    ts_ns: i64,
    span_id: i64,
    parent: Option<i64>,
    depth: i32,
    function: u32,
) -> Row {
    let f = &functions()[function as usize];
    Row {
        tid: Some(1235),
        thread_name: Some("worker".into()),
        span_id: Some(span_id),
        parent_span_id: parent,
        depth: Some(depth),
        function: Some(f.name.clone()),
        module: Some(f.module.clone()),
        ..row(kind, ts_ns, 1234)
    }
}

#[test]
fn a_goroutine_round_trips_on_both_span_rows_and_is_null_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("go.parquet");
    let mut w = RecordingWriter::create(&path, functions(), meta()).unwrap();
    let mut go_start = start(1, None, 0, 0, 100);
    let mut go_end = end(1, None, 0, 0, 100, 200, SpanStatus::Ok);
    if let (SpanEvent::Start(s), SpanEvent::End(e)) = (&mut go_start, &mut go_end) {
        s.goroutine = Some(4242);
        e.goroutine = Some(4242);
    }
    w.write_span(&go_start).unwrap();
    w.write_span(&start(2, None, 0, 1, 150)).unwrap();
    w.write_span(&go_end).unwrap();
    w.finish(0, &[]).unwrap();
    let goroutines: Vec<Option<i64>> = read_all(&path)
        .unwrap()
        .iter()
        .map(|r| r.goroutine)
        .collect();
    assert_eq!(goroutines, [Some(4242), None, Some(4242)]);
}

#[test]
fn a_spans_split_round_trips_and_is_null_where_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("split.parquet");
    let mut w = RecordingWriter::create(&path, functions(), meta()).unwrap();
    let mut known = end(1, None, 0, 0, 100, 1000, SpanStatus::Ok);
    let mut no_block = end(2, None, 0, 1, 100, 1000, SpanStatus::Ok);
    if let (SpanEvent::End(a), SpanEvent::End(b)) = (&mut known, &mut no_block) {
        a.sched = Some(SchedSplit {
            cpu_ns: 300,
            runnable_ns: 100,
            blocked_ns: 500,
            blocked_in: Some(BlockedIn(202)),
        });
        b.sched = Some(SchedSplit {
            cpu_ns: 900,
            ..SchedSplit::default()
        });
    }
    w.write_span(&start(1, None, 0, 0, 100)).unwrap();
    w.write_span(&known).unwrap();
    w.write_span(&no_block).unwrap();
    w.write_span(&end(3, None, 0, 0, 100, 1000, SpanStatus::Open))
        .unwrap();
    w.finish(0, &[]).unwrap();
    let split: Vec<_> = read_all(&path)
        .unwrap()
        .into_iter()
        .map(|r| (r.cpu_ns, r.runnable_ns, r.blocked_ns, r.blocked_in))
        .collect();
    assert_eq!(
        split,
        [
            (None, None, None, None),
            (Some(300), Some(100), Some(500), Some("futex".to_owned())),
            (Some(900), Some(0), Some(0), None),
            (None, None, None, None),
        ]
    );
}

fn row_groups(path: &Path) -> Vec<i64> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(parquet::file::metadata::RowGroupMetaData::num_rows)
        .collect()
}

#[test]
fn every_column_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.parquet");
    let mut w = RecordingWriter::create(&path, functions(), meta()).unwrap();
    w.write_span(&start(1, None, 0, 0, 100)).unwrap();
    w.write_span(&start(2, Some(1), 1, 1, 150)).unwrap();
    let mut sample =
        MetricSample::basic(160, 1234, "app".into(), Some(87.5), Some(1 << 33), Some(9));
    sample.extra[super::metric::MAJOR_FAULTS] = Some(2.5);
    sample.extra[super::metric::OPEN_FDS] = Some(17.0);
    w.write_metric(&sample).unwrap();
    w.write_span(&end(2, Some(1), 1, 1, 150, 175, SpanStatus::Unwound))
        .unwrap();
    w.write_metric(&MetricSample::basic(
        180,
        1234,
        "app".into(),
        None,
        None,
        None,
    ))
    .unwrap();
    let mut main_end = end(1, None, 0, 0, 100, 200, SpanStatus::Ok);
    if let SpanEvent::End(e) = &mut main_end {
        e.overhead_ns = 7;
    }
    w.write_span(&main_end).unwrap();
    w.write_span(&end(3, None, 0, 0, 190, 200, SpanStatus::Open))
        .unwrap();
    assert_eq!(w.rows_written(), 7);
    w.finish(0, &[]).unwrap();

    let rows = read_all(&path).unwrap();
    let expected = vec![
        span_row(KIND_SPAN_START, 100, 1, None, 0, 0),
        span_row(KIND_SPAN_START, 150, 2, Some(1), 1, 1),
        Row {
            thread_name: Some("app".into()),
            cpu_percent: Some(87.5),
            rss_bytes: Some(1 << 33),
            threads: Some(9),
            extra: {
                let mut extra = [None; super::metric::COUNT];
                extra[super::metric::MAJOR_FAULTS] = Some(2.5);
                extra[super::metric::OPEN_FDS] = Some(17.0);
                extra
            },
            ..row(KIND_METRIC, 160, 1234)
        },
        Row {
            start_ns: Some(150),
            duration_ns: Some(25),
            status: Some("unwound".into()),
            overhead_ns: Some(0),
            overhead_outside_ns: Some(0),
            ..span_row(KIND_SPAN_END, 175, 2, Some(1), 1, 1)
        },
        Row {
            thread_name: Some("app".into()),
            ..row(KIND_METRIC, 180, 1234)
        },
        Row {
            start_ns: Some(100),
            duration_ns: Some(100),
            status: Some("ok".into()),
            overhead_ns: Some(7),
            overhead_outside_ns: Some(0),
            ..span_row(KIND_SPAN_END, 200, 1, None, 0, 0)
        },
        Row {
            start_ns: Some(190),
            duration_ns: Some(10),
            status: Some("open".into()),
            overhead_ns: Some(0),
            overhead_outside_ns: Some(0),
            ..span_row(KIND_SPAN_END, 200, 3, None, 0, 0)
        },
    ];
    assert_eq!(rows, expected);
    for r in &rows {
        assert_eq!(
            r.time,
            Some(r.ts_ns.unwrap() + OFFSET),
            "time is ts_ns on the wall clock"
        );
    }
}

#[test]
fn file_types_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.parquet");
    let mut w = RecordingWriter::create(&path, functions(), meta()).unwrap();
    w.write_span(&start(1, None, 0, 0, 100)).unwrap();
    w.finish(0, &[]).unwrap();

    let strings = [
        col::KIND,
        col::THREAD_NAME,
        col::FUNCTION,
        col::MODULE,
        col::STATUS,
        col::STACK,
        col::WAIT,
        col::BLOCKED_IN,
    ];
    let i64s = [
        col::TS_NS,
        col::SPAN_ID,
        col::PARENT_SPAN_ID,
        col::START_NS,
        col::DURATION_NS,
        col::RSS_BYTES,
        col::OVERHEAD_NS,
        col::OVERHEAD_OUTSIDE_NS,
        col::GOROUTINE,
        col::STALL_GROUP,
        col::CPU_NS,
        col::RUNNABLE_NS,
        col::BLOCKED_NS,
    ];
    let i32s = [col::PID, col::TID, col::DEPTH, col::THREADS];
    let required = [col::KIND, col::TS_NS, col::TIME, col::PID];

    // The Arrow schema handed to readers.
    let schema = schema();
    assert_eq!(schema.fields().len(), 27 + super::metric::COUNT);
    for field in schema.fields() {
        let name = field.name().as_str();
        let extra = super::metric::DEFS.iter().find(|d| d.column == name);
        let want = match name {
            _ if extra.is_some_and(|d| d.unit.is_integer()) => DataType::Int64,
            _ if extra.is_some() => DataType::Float64,
            n if strings.contains(&n) => DataType::Utf8,
            n if i64s.contains(&n) => DataType::Int64,
            n if i32s.contains(&n) => DataType::Int32,
            col::TIME => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            col::CPU_PERCENT => DataType::Float64,
            other => panic!("unexpected column {other}"),
        };
        assert_eq!(field.data_type(), &want, "{name}");
        assert_eq!(field.is_nullable(), !required.contains(&name), "{name}");
    }

    // The Parquet types other tools (DuckDB, pandas) see.
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let parquet = reader.metadata().file_metadata().schema_descr();
    for column in parquet.columns() {
        let name = column.name();
        let (physical, logical) = (column.physical_type(), column.logical_type_ref());
        let extra = super::metric::DEFS.iter().find(|d| d.column == name);
        match name {
            _ if extra.is_some_and(|d| d.unit.is_integer()) => {
                assert_eq!(physical, PhysicalType::INT64, "{name}");
            }
            _ if extra.is_some() => assert_eq!(physical, PhysicalType::DOUBLE, "{name}"),
            n if strings.contains(&n) => {
                assert_eq!(
                    (physical, logical),
                    (PhysicalType::BYTE_ARRAY, Some(&LogicalType::String)),
                    "{n}"
                );
            }
            n if i64s.contains(&n) => assert_eq!(physical, PhysicalType::INT64, "{n}"),
            n if i32s.contains(&n) => assert_eq!(physical, PhysicalType::INT32, "{n}"),
            col::CPU_PERCENT => assert_eq!(physical, PhysicalType::DOUBLE),
            col::TIME => {
                assert_eq!(physical, PhysicalType::INT64);
                assert_eq!(
                    logical,
                    Some(&LogicalType::timestamp(
                        true,
                        parquet::basic::TimeUnit::NANOS
                    ))
                );
            }
            other => panic!("unexpected column {other}"),
        }
        let optional = column.self_type().get_basic_info().repetition()
            == parquet::basic::Repetition::OPTIONAL;
        assert_eq!(optional, !required.contains(&name), "{name}");
    }
}

#[test]
fn stall_rows_carry_the_stack_and_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.parquet");
    let mut w = RecordingWriter::create(&path, functions(), meta()).unwrap();
    w.write_span(&start(7, None, 0, 1, 100)).unwrap();
    let stack = "__lll_lock_wait (lowlevellock.c:49)\napp::work<T> (work.c:12)";
    let wait = "sleeping in futex(0x1000, FUTEX_WAIT_PRIVATE, 2, NULL) — waits for mutex \
                0x1000 held by tid 1236 (other)";
    w.write_stall(&StallRow {
        ts_ns: 5_100,
        pid: 1234,
        tid: 1235,
        thread_name: "worker",
        span_id: 7,
        depth: 0,
        function: 1,
        start_ns: 100,
        stack,
        wait,
        goroutine: None,
        group: 3,
    })
    .unwrap();
    w.finish(0, &[]).unwrap();
    let rows = read_all(&path).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].stack, None, "span rows have no stack");
    assert_eq!(
        rows[1],
        Row {
            start_ns: Some(100),
            duration_ns: Some(5_000),
            stack: Some(stack.to_owned()),
            wait: Some(wait.to_owned()),
            stall_group: Some(3),
            ..span_row(KIND_STALL, 5_100, 7, None, 0, 1)
        }
    );
    let unknown = RecordingWriter::create(&dir.path().join("x.parquet"), functions(), meta())
        .unwrap()
        .write_stall(&StallRow {
            function: 9,
            ..StallRow {
                ts_ns: 1,
                pid: 1,
                tid: 1,
                thread_name: "t",
                span_id: 1,
                depth: 0,
                function: 0,
                start_ns: 0,
                stack: "",
                wait: "",
                goroutine: None,
                group: 1,
            }
        });
    assert!(matches!(
        unknown,
        Err(SinkError::UnknownFunction { index: 9, .. })
    ));
}

#[test]
fn metadata_records_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.parquet");
    let w = RecordingWriter::create(&path, functions(), meta()).unwrap();
    w.finish(42, &[("ferret.orphan_exits".into(), "3".into())])
        .unwrap();

    let m = read_metadata(&path).unwrap();
    assert_eq!(m[meta_key::VERSION], env!("CARGO_PKG_VERSION"));
    assert_eq!(m[meta_key::TARGET], "--pid 1234");
    assert_eq!(m[meta_key::PROBES], "app::*, libwork.so:*");
    assert_eq!(m[meta_key::LOST_EVENTS], "42");
    assert_eq!(m[meta_key::REALTIME_OFFSET_NS], OFFSET.to_string());
    assert_eq!(m[meta_key::COMPLETE], "true");
    assert_eq!(m["ferret.orphan_exits"], "3");
    assert!(
        read_all(&path).unwrap().is_empty(),
        "a recording with no rows is valid"
    );
}

#[test]
fn row_groups_close_by_size_not_on_every_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.parquet");
    let max_rows = 2 * ROW_GROUP_ROWS;
    let mut w = RecordingWriter::create(&path, functions(), meta())
        .unwrap()
        .with_group_limits(max_rows, Duration::from_hours(1));
    for i in 0..10u64 {
        w.write_span(&start(i + 1, None, 0, 0, i)).unwrap();
    }
    w.flush().unwrap(); // encoded into the open row group, which stays open
    w.flush().unwrap(); // nothing buffered
    let total = 10 + 2 * ROW_GROUP_ROWS as u64 + 5;
    for i in 10..total {
        w.write_span(&end(i, None, 0, 1, i, i + 7, SpanStatus::Ok))
            .unwrap();
    }
    assert_eq!(w.rows_written(), total);
    w.finish(0, &[]).unwrap();

    // Batches of ROW_GROUP_ROWS are encoded into the open group, which
    // closes at the first batch that takes it to `max_rows`.
    let first = 10 + max_rows as i64;
    assert_eq!(row_groups(&path), [first, total as i64 - first]);
    let rows = read_all(&path).unwrap();
    assert_eq!(rows.len() as u64, total);
    let last = rows.last().unwrap();
    assert_eq!(
        (last.span_id, last.ts_ns, last.duration_ns),
        (Some(total as i64 - 1), Some(total as i64 + 6), Some(7))
    );
}

#[test]
fn a_row_group_open_long_enough_closes_at_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.parquet");
    let mut w = RecordingWriter::create(&path, functions(), meta())
        .unwrap()
        .with_group_limits(ROW_GROUP_MAX_ROWS, Duration::ZERO);
    for i in 0..10u64 {
        w.write_span(&start(i + 1, None, 0, 0, i)).unwrap();
    }
    w.flush().unwrap();
    w.flush().unwrap(); // nothing open: no empty row group
    for i in 10..15u64 {
        w.write_span(&start(i + 1, None, 0, 0, i)).unwrap();
    }
    w.finish(0, &[]).unwrap();
    assert_eq!(row_groups(&path), [10, 5]);
}

/// Every closed row group leaves its metadata in the writer until the
/// footer; a writer flushed every second used to close a row group each time,
/// so memory grew all through a long recording.
#[test]
fn regression_flushes_do_not_add_a_row_group_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.parquet");
    let mut w = RecordingWriter::create(&path, functions(), meta()).unwrap();
    for i in 0..100u64 {
        w.write_span(&start(i + 1, None, 0, 0, i)).unwrap();
        w.flush().unwrap();
    }
    w.finish(0, &[]).unwrap();
    assert_eq!(row_groups(&path), [100]);
}

#[test]
fn refuses_to_write_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let link = dir.path().join("trace.parquet");
    symlink(&victim, &link).unwrap();

    let err = RecordingWriter::create(&link, functions(), meta()).unwrap_err();
    assert!(matches!(err, SinkError::Symlink { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "refusing to write {}: it is a symbolic link",
            link.display()
        )
    );
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "target untouched"
    );
}

#[test]
fn unwritable_paths_give_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("trace.parquet");
    let err = RecordingWriter::create(&missing, functions(), meta()).unwrap_err();
    assert!(matches!(err, SinkError::Create { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot create {}: No such file or directory (os error 2)",
            missing.display()
        )
    );

    // sysfs accepts no new files, even from root (for whom a read-only
    // directory mode would not stop anything).
    let sys = Path::new("/sys/ferret-test.parquet");
    let err = RecordingWriter::create(sys, functions(), meta()).unwrap_err();
    let SinkError::Create { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            source.raw_os_error(),
            Some(libc::EACCES | libc::EROFS | libc::EPERM)
        ),
        "{source:?}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot create /sys/ferret-test.parquet: "),
        "{err}"
    );
}

#[test]
fn a_file_not_written_by_ferret_is_rejected_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.parquet");
    std::fs::write(&path, b"not parquet at all").unwrap();
    let err = read_all(&path).unwrap_err();
    assert!(matches!(err, SinkError::Read { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("reading {}: ", path.display())),
        "{err}"
    );

    let err = read_all(&dir.path().join("absent.parquet")).unwrap_err();
    assert!(matches!(err, SinkError::Open { .. }), "{err:?}");

    // Parquet, but some other table.
    let other = dir.path().join("other.parquet");
    let column: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![1, 2]));
    let batch = arrow::record_batch::RecordBatch::try_from_iter([("x", column)]).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&other).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let err = read_all(&other).unwrap_err();
    assert!(
        matches!(err, SinkError::Column { column: "kind", .. }),
        "{err:?}"
    );
}

#[test]
fn unknown_function_index_is_an_error_not_a_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.parquet");
    let mut w = RecordingWriter::create(&path, functions(), meta()).unwrap();
    let err = w.write_span(&start(1, None, 0, 7, 100)).unwrap_err();
    assert!(
        matches!(err, SinkError::UnknownFunction { index: 7, known: 2 }),
        "{err:?}"
    );
    assert_eq!(w.rows_written(), 0);
    w.write_span(&start(1, None, 0, 1, 100)).unwrap();
    w.finish(0, &[]).unwrap();
    assert_eq!(read_all(&path).unwrap().len(), 1);
}

#[test]
fn dropped_writer_still_leaves_a_readable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.parquet");
    let mut w = RecordingWriter::create(&path, functions(), meta()).unwrap();
    w.write_span(&start(1, None, 0, 0, 100)).unwrap();
    w.flush().unwrap();
    w.write_span(&start(2, Some(1), 1, 1, 110)).unwrap();
    drop(w);

    let rows = read_all(&path).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.span_id).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    let m = read_metadata(&path).unwrap();
    assert_eq!(m[meta_key::COMPLETE], "false");
    assert_eq!(m[meta_key::TARGET], "--pid 1234");
    assert!(!m.contains_key(meta_key::LOST_EVENTS));
}

/// One row to write, for [`any_rows_read_back_as_written`].
#[derive(Clone, Debug)]
enum Op {
    Start(SpanStart),
    End(SpanEnd),
    Metric(Box<MetricSample>),
    Stall {
        thread: String,
        stack: String,
        wait: String,
        ts_ns: u64,
        start_ns: u64,
        span_id: u64,
    },
}

mod any {
    use proptest::prelude::*;

    use super::*;

    /// Thread names, shared or not (the writer looks shared ones up by
    /// pointer), the empty one and non-ASCII ones among them.
    fn thread_name() -> impl Strategy<Value = ThreadName> {
        let shared: Vec<ThreadName> = ["worker", "", "io-ü", "w"]
            .into_iter()
            .map(ThreadName::from)
            .collect();
        prop_oneof![
            3 => (0..shared.len()).prop_map(move |i| shared[i]),
            1 => "[a-zé]{0,15}".prop_map(|s| ThreadName::from(s.as_str())),
        ]
    }

    /// Times and ids anywhere in their range, or close together.
    fn u64_value() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            1_000_000u64..1_001_000,
            Just(0),
            Just(u64::MAX),
            Just(i64::MAX as u64 + 1),
        ]
    }

    fn u32_value() -> impl Strategy<Value = u32> {
        prop_oneof![any::<u32>(), 1000u32..1010, Just(u32::MAX), Just(0)]
    }

    /// Finite doubles (NaN never equals itself), integral ones for the
    /// integer metrics.
    fn metric_value() -> BoxedStrategy<Option<f64>> {
        prop::option::of(prop_oneof![
            (-1e15f64..1e15).prop_map(f64::round),
            Just(0.0),
            Just(-0.0),
            Just(f64::INFINITY),
        ])
        .boxed()
    }

    fn status() -> impl Strategy<Value = SpanStatus> {
        prop_oneof![
            Just(SpanStatus::Ok),
            Just(SpanStatus::Unwound),
            Just(SpanStatus::Open)
        ]
    }

    pub(super) fn op() -> impl Strategy<Value = Op> {
        let span = || {
            (
                u64_value(),
                prop::option::of(u64_value()),
                u32_value(),
                u32_value(),
                u32_value(),
                thread_name(),
                0u32..2,
                u64_value(),
            )
        };
        prop_oneof![
            8 => span().prop_map(|(span_id, parent, depth, pid, tid, name, function, ts_ns)| {
                Op::Start(SpanStart {
                    span_id,
                    parent_span_id: parent,
                    depth,
                    pid,
                    tid,
                    thread_name: name,
                    function,
                    ts_ns,
                    goroutine: None,
                    before_attach: false,
                })
            }),
            8 => (span(), u64_value(), status(), 0u64..1 << 40, 0u64..1 << 30).prop_map(
                |((span_id, parent, depth, pid, tid, name, function, ts_ns), start_ns, status, overhead_ns, overhead_outside_ns)| {
                    Op::End(SpanEnd {
                        span_id,
                        parent_span_id: parent,
                        depth,
                        pid,
                        tid,
                        thread_name: name,
                        function,
                        start_ns,
                        ts_ns,
                        status,
                        overhead_ns,
                        overhead_outside_ns,
                        goroutine: None,
                        sched: None,
                    })
                }
            ).boxed(),
            1 => (
                u64_value(),
                u32_value(),
                "[a-z]{0,8}",
                metric_value(),
                prop::option::of(u64_value()),
                prop::option::of(u32_value()),
                prop::array::uniform21(metric_value()),
            )
                .prop_map(|(ts_ns, pid, name, cpu, rss, threads, extra)| {
                    Op::Metric(Box::new(MetricSample {
                        extra,
                        ..MetricSample::basic(ts_ns, pid, name, cpu, rss, threads)
                    }))
                })
                .boxed(),
            1 => ("[a-z]{0,6}", ".{0,80}", ".{0,80}", u64_value(), u64_value(), u64_value())
                .prop_map(|(thread, stack, wait, ts_ns, start_ns, span_id)| Op::Stall {
                    thread,
                    stack,
                    wait,
                    ts_ns,
                    start_ns,
                    span_id,
                })
                .boxed(),
        ]
    }
}

/// What `op` reads back as.
fn expected(op: &Op) -> Row {
    let wall = |ts: u64| (ts as i64).saturating_add(OFFSET);
    let base = |kind: &str, ts: u64, pid: u32| Row {
        ts_ns: Some(ts as i64),
        time: Some(wall(ts)),
        pid: Some(pid as i32),
        ..row(kind, 0, 0)
    };
    let span = |kind: &str,
                ts: u64,
                span_id: u64,
                parent: Option<u64>,
                depth: u32,
                pid: u32,
                tid: u32,
                name: &str,
                function: u32| {
        let f = &functions()[function as usize];
        Row {
            tid: Some(tid as i32),
            thread_name: Some(name.to_owned()),
            span_id: Some(span_id as i64),
            parent_span_id: parent.map(|p| p as i64),
            depth: Some(depth as i32),
            function: Some(f.name.clone()),
            module: Some(f.module.clone()),
            ..base(kind, ts, pid)
        }
    };
    match op {
        Op::Start(s) => span(
            KIND_SPAN_START,
            s.ts_ns,
            s.span_id,
            s.parent_span_id,
            s.depth,
            s.pid,
            s.tid,
            &s.thread_name,
            s.function,
        ),
        Op::End(e) => Row {
            start_ns: Some(e.start_ns as i64),
            duration_ns: Some(e.duration_ns() as i64),
            status: Some(e.status.as_str().to_owned()),
            overhead_ns: Some(e.overhead_ns as i64),
            overhead_outside_ns: Some(e.overhead_outside_ns as i64),
            ..span(
                KIND_SPAN_END,
                e.ts_ns,
                e.span_id,
                e.parent_span_id,
                e.depth,
                e.pid,
                e.tid,
                &e.thread_name,
                e.function,
            )
        },
        Op::Metric(m) => Row {
            thread_name: Some(m.process_name.clone()),
            cpu_percent: m.cpu_percent,
            rss_bytes: m.rss_bytes.map(|r| r as i64),
            threads: m.threads.map(|t| t as i32),
            // Integer metrics are stored rounded (and saturated).
            extra: std::array::from_fn(|k| {
                let integer = super::metric::DEFS[k].unit.is_integer();
                m.extra[k].map(|v| if integer { v.round() as i64 as f64 } else { v })
            }),
            ..base(KIND_METRIC, m.ts_ns, m.pid)
        },
        Op::Stall {
            thread,
            stack,
            wait,
            ts_ns,
            start_ns,
            span_id,
        } => Row {
            parent_span_id: None,
            start_ns: Some(*start_ns as i64),
            duration_ns: Some(ts_ns.saturating_sub(*start_ns) as i64),
            stack: Some(stack.clone()),
            wait: Some(wait.clone()),
            stall_group: Some((*span_id % 5) as i64),
            ..span(KIND_STALL, *ts_ns, *span_id, None, 3, 77, 78, thread, 1)
        },
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the rows (values at the edges of their types, nulls
    /// anywhere, strings of any length), and wherever batches and row
    /// groups end, the file reads back as written.
    #[test]
    fn any_rows_read_back_as_written(
        ops in proptest::collection::vec(any::op(), 0..300),
        batch in 1usize..70,
        group in 1usize..200,
        flush_every in 1usize..100,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.parquet");
        let mut w = RecordingWriter::create(&path, functions(), meta())
            .unwrap()
            .with_batch_rows(batch)
            .with_group_limits(group, Duration::from_hours(1));
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Start(s) => w.write_span(&SpanEvent::Start(s.clone())).unwrap(),
                Op::End(e) => w.write_span(&SpanEvent::End(e.clone())).unwrap(),
                Op::Metric(m) => w.write_metric(m).unwrap(),
                Op::Stall { thread, stack, wait, ts_ns, start_ns, span_id } => w
                    .write_stall(&StallRow {
                        ts_ns: *ts_ns,
                        pid: 77,
                        tid: 78,
                        thread_name: thread,
                        span_id: *span_id,
                        depth: 3,
                        function: 1,
                        start_ns: *start_ns,
                        stack,
                        wait,
                        goroutine: None,
                        group: *span_id % 5,
                    })
                    .unwrap(),
            }
            if i % flush_every == flush_every - 1 {
                w.flush().unwrap();
            }
        }
        w.finish(0, &[]).unwrap();
        let rows = read_all(&path).unwrap();
        let want: Vec<Row> = ops.iter().map(expected).collect();
        proptest::prop_assert_eq!(rows.len(), want.len());
        for (i, (got, want)) in rows.iter().zip(&want).enumerate() {
            proptest::prop_assert_eq!(got, want, "row {}", i);
        }
    }
}

#[test]
fn the_contract_document_lists_every_column_and_key() {
    let contract = include_str!("../../../docs/CONTRACTS.md");
    let missing: Vec<String> = schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .chain(super::meta_key::ALL.iter().map(|k| (*k).to_owned()))
        .filter(|name| !contract.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/CONTRACTS.md does not document {missing:?}"
    );
}
