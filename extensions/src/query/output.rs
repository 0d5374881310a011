//! Result formats, written batch by batch so that a result is streamed, never held whole: `json` (an
//! array of row objects), `ndjson` (one object per line), `csv` (header, then rows; nested values as
//! text) and `arrow` (an Arrow IPC stream). Binary values (trace and span ids) are lowercase hex in the
//! text formats.

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use std::str::FromStr;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Csv,
    Arrow,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            "arrow" => Ok(Format::Arrow),
            other => Err(format!("format {other:?} is not one of json, ndjson, csv, arrow")),
        }
    }
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// Turns batches into the bytes of one format.
pub struct Encoder {
    format: Format,
    rows_written: usize,
    ipc: Option<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
    csv_header: bool,
}

impl Encoder {
    /// The encoder, and the bytes that open the output.
    pub fn new(format: Format, schema: &SchemaRef) -> Result<(Encoder, Vec<u8>), ArrowError> {
        let mut e = Encoder { format, rows_written: 0, ipc: None, csv_header: true };
        let mut start = Vec::new();
        match format {
            Format::Json => start.push(b'['),
            Format::Arrow => {
                let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?;
                start = std::mem::take(w.get_mut());
                e.ipc = Some(w);
            }
            Format::Ndjson | Format::Csv => {}
        }
        Ok((e, start))
    }

    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let out = match self.format {
            Format::Json | Format::Ndjson => {
                let mut lines = Vec::new();
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::LineDelimited>(&mut lines);
                w.write(batch)?;
                w.finish()?;
                drop(w);
                if self.format == Format::Ndjson {
                    lines
                } else {
                    // Objects separated by commas inside the array opened by `new`.
                    let mut out = Vec::with_capacity(lines.len() + batch.num_rows());
                    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        if self.rows_written > 0 || !out.is_empty() {
                            out.push(b',');
                        }
                        out.extend_from_slice(line);
                    }
                    out
                }
            }
            Format::Csv => {
                let flat = flat_for_csv(batch)?;
                let mut out = Vec::new();
                let mut w = arrow::csv::WriterBuilder::new().with_header(self.csv_header).build(&mut out);
                w.write(&flat)?;
                drop(w);
                self.csv_header = false;
                out
            }
            Format::Arrow => {
                let w = self.ipc.as_mut().expect("arrow writer made in new");
                w.write(batch)?;
                std::mem::take(w.get_mut())
            }
        };
        self.rows_written += batch.num_rows();
        Ok(out)
    }

    /// The bytes that close the output.
    pub fn finish(&mut self, schema: &SchemaRef) -> Result<Vec<u8>, ArrowError> {
        Ok(match self.format {
            Format::Json => b"]\n".to_vec(),
            Format::Csv if self.csv_header => {
                // No rows: still the header line.
                let mut out = Vec::new();
                let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                w.write(&flat_for_csv(&RecordBatch::new_empty(schema.clone()))?)?;
                drop(w);
                self.csv_header = false;
                out
            }
            Format::Arrow => {
                let w = self.ipc.as_mut().expect("arrow writer made in new");
                w.finish()?;
                std::mem::take(w.get_mut())
            }
            _ => Vec::new(),
        })
    }
}

/// CSV holds flat values: dictionaries become their values, lists, maps and structs their text.
fn flat_for_csv(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        match f.data_type() {
            DataType::Dictionary(_, value) if !value.is_nested() => {
                columns.push(arrow::compute::cast(c, value)?);
                fields.push(Field::new(f.name(), value.as_ref().clone(), true));
            }
            t if t.is_nested() || matches!(t, DataType::Dictionary(..)) => {
                let fmt = ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default())?;
                let text: StringArray =
                    (0..c.len()).map(|i| (!c.is_null(i)).then(|| fmt.value(i).to_string())).collect();
                columns.push(Arc::new(text));
                fields.push(Field::new(f.name(), DataType::Utf8, true));
            }
            _ => {
                columns.push(c.clone());
                fields.push(f.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryArray, Int64Array};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("trace_id", DataType::Binary, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(BinaryArray::from(vec![Some(&[0xafu8, 0x3c][..]), None])),
                Arc::new(Int64Array::from(vec![Some(1), Some(2)])),
            ],
        )
        .unwrap()
    }

    fn render(format: Format, batches: &[RecordBatch]) -> String {
        let schema = batch().schema();
        let (mut e, mut out) = Encoder::new(format, &schema).unwrap();
        for b in batches {
            out.extend(e.batch(b).unwrap());
        }
        out.extend(e.finish(&schema).unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_formats_write_ids_as_lowercase_hex_and_nulls_explicitly() {
        assert_eq!(
            render(Format::Json, &[batch(), batch()]),
            "[{\"trace_id\":\"af3c\",\"n\":1},{\"trace_id\":null,\"n\":2},{\"trace_id\":\"af3c\",\"n\":1},{\"trace_id\":null,\"n\":2}]\n"
        );
        assert_eq!(
            render(Format::Ndjson, &[batch()]),
            "{\"trace_id\":\"af3c\",\"n\":1}\n{\"trace_id\":null,\"n\":2}\n"
        );
        assert_eq!(render(Format::Csv, &[batch(), batch()]), "trace_id,n\naf3c,1\n,2\naf3c,1\n,2\n");
    }

    #[test]
    fn empty_results_are_still_well_formed() {
        assert_eq!(render(Format::Json, &[]), "[]\n");
        assert_eq!(render(Format::Ndjson, &[]), "");
        assert_eq!(render(Format::Csv, &[]), "trace_id,n\n");
    }

    #[test]
    fn arrow_output_is_an_ipc_stream_that_reads_back() {
        let schema = batch().schema();
        let (mut e, mut out) = Encoder::new(Format::Arrow, &schema).unwrap();
        out.extend(e.batch(&batch()).unwrap());
        out.extend(e.finish(&schema).unwrap());
        let read: Vec<RecordBatch> = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(out), None)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read, vec![batch()]);
    }
}
