//! Spike trains and sampled state as Parquet files that pandas and polars read
//! directly (`pd.read_parquet("spikes.parquet")`).

use anyhow::{Context, Result};
use neuropil_sim::shard::Sample;
use neuropil_sim::{Network, Spike};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

const ROWS_PER_GROUP: usize = 1 << 20;

/// One column's values for a row group.
enum Col<'a> {
    I32(&'a [i32]),
    F64(&'a [f64]),
    Str(&'a [ByteArray]),
}

/// Write `spikes` (canonical order) as `neuron_id: int32, population: string, time_ms: double`.
pub fn write_spikes(path: &Path, net: &Network, spikes: &[Spike]) -> Result<()> {
    let schema =
        "message spikes { REQUIRED INT32 neuron_id; REQUIRED BYTE_ARRAY population (UTF8); REQUIRED DOUBLE time_ms; }";
    let names: Vec<ByteArray> = net.populations.iter().map(|p| ByteArray::from(p.name.as_str())).collect();
    let mut w = open(path, schema)?;
    for chunk in spikes.chunks(ROWS_PER_GROUP) {
        let ids: Vec<i32> = chunk.iter().map(|s| s.gid as i32).collect();
        let pops: Vec<ByteArray> = chunk.iter().map(|s| names[net.population_of(s.gid)].clone()).collect();
        let times: Vec<f64> = chunk.iter().map(|s| (s.step + 1) as f64 * net.dt_ms).collect();
        row_group(&mut w, &[Col::I32(&ids), Col::Str(&pops), Col::F64(&times)])?;
    }
    if spikes.is_empty() {
        row_group(&mut w, &[Col::I32(&[]), Col::Str(&[]), Col::F64(&[])])?;
    }
    w.close().context("finishing spikes.parquet")?;
    Ok(())
}

/// Write samples as `time_ms: double, neuron_id: int32, population: string, variable: string, value: double`.
pub fn write_samples(path: &Path, net: &Network, samples: &[Sample]) -> Result<()> {
    let schema = "message state { REQUIRED DOUBLE time_ms; REQUIRED INT32 neuron_id; REQUIRED BYTE_ARRAY population (UTF8); REQUIRED BYTE_ARRAY variable (UTF8); REQUIRED DOUBLE value; }";
    let mut w = open(path, schema)?;
    let pop_name = |gid| ByteArray::from(net.populations[net.population_of(gid)].name.as_str());
    for chunk in samples.chunks(ROWS_PER_GROUP) {
        let times: Vec<f64> = chunk.iter().map(|s| (s.step + 1) as f64 * net.dt_ms).collect();
        let ids: Vec<i32> = chunk.iter().map(|s| s.gid as i32).collect();
        let pops: Vec<ByteArray> = chunk.iter().map(|s| pop_name(s.gid)).collect();
        let vars: Vec<ByteArray> = chunk
            .iter()
            .map(|s| {
                let model = net.populations[net.population_of(s.gid)].model;
                ByteArray::from(model.state()[s.var as usize].name)
            })
            .collect();
        let values: Vec<f64> = chunk.iter().map(|s| s.value).collect();
        row_group(&mut w, &[Col::F64(&times), Col::I32(&ids), Col::Str(&pops), Col::Str(&vars), Col::F64(&values)])?;
    }
    if samples.is_empty() {
        row_group(&mut w, &[Col::F64(&[]), Col::I32(&[]), Col::Str(&[]), Col::Str(&[]), Col::F64(&[])])?;
    }
    w.close().context("finishing state.parquet")?;
    Ok(())
}

/// Write final plastic weights as `projection: int32, source: int32, target: int32,
/// delay_ms: double, weight: double`.
pub fn write_weights(path: &Path, net: &Network, weights: &[neuropil_sim::network::PlasticWeight]) -> Result<()> {
    let schema = "message weights { REQUIRED INT32 projection; REQUIRED INT32 source; REQUIRED INT32 target; REQUIRED DOUBLE delay_ms; REQUIRED DOUBLE weight; }";
    let mut w = open(path, schema)?;
    for chunk in weights.chunks(ROWS_PER_GROUP) {
        let proj: Vec<i32> = chunk.iter().map(|x| x.projection as i32).collect();
        let src: Vec<i32> = chunk.iter().map(|x| x.source as i32).collect();
        let tgt: Vec<i32> = chunk.iter().map(|x| x.target as i32).collect();
        let delay: Vec<f64> = chunk.iter().map(|x| x.delay_steps as f64 * net.dt_ms).collect();
        let weight: Vec<f64> = chunk.iter().map(|x| x.weight).collect();
        row_group(&mut w, &[Col::I32(&proj), Col::I32(&src), Col::I32(&tgt), Col::F64(&delay), Col::F64(&weight)])?;
    }
    if weights.is_empty() {
        row_group(&mut w, &[Col::I32(&[]), Col::I32(&[]), Col::I32(&[]), Col::F64(&[]), Col::F64(&[])])?;
    }
    w.close().context("finishing weights.parquet")?;
    Ok(())
}

fn open(path: &Path, schema: &str) -> Result<SerializedFileWriter<File>> {
    let schema = Arc::new(parse_message_type(schema).context("parquet schema")?);
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let props = Arc::new(WriterProperties::builder().build());
    Ok(SerializedFileWriter::new(file, schema, props)?)
}

fn row_group(w: &mut SerializedFileWriter<File>, cols: &[Col<'_>]) -> Result<()> {
    let mut rg = w.next_row_group()?;
    for col in cols {
        let mut cw = rg.next_column()?.context("parquet schema has fewer columns than written")?;
        match col {
            Col::I32(v) => {
                cw.typed::<Int32Type>().write_batch(v, None, None)?;
            }
            Col::F64(v) => {
                cw.typed::<DoubleType>().write_batch(v, None, None)?;
            }
            Col::Str(v) => {
                cw.typed::<ByteArrayType>().write_batch(v, None, None)?;
            }
        }
        cw.close()?;
    }
    rg.close()?;
    Ok(())
}

/// Read `neuron_id` and `time_ms` back from a spikes file.
pub fn read_spikes(path: &Path) -> Result<Vec<(u32, f64)>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader =
        SerializedFileReader::new(file).with_context(|| format!("{} is not a Parquet file", path.display()))?;
    let mut out = Vec::new();
    for g in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(g)?;
        let n = rg.metadata().num_rows() as usize;
        let mut ids = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut r = parquet::column::reader::get_typed_column_reader::<Int32Type>(rg.get_column_reader(0)?);
        while ids.len() < n {
            let (recs, _, _) = r.read_records(n - ids.len(), None, None, &mut ids)?;
            if recs == 0 {
                break;
            }
        }
        let mut r = parquet::column::reader::get_typed_column_reader::<DoubleType>(rg.get_column_reader(2)?);
        while times.len() < n {
            let (recs, _, _) = r.read_records(n - times.len(), None, None, &mut times)?;
            if recs == 0 {
                break;
            }
        }
        out.extend(ids.into_iter().zip(times).map(|(i, t)| (i as u32, t)));
    }
    Ok(out)
}
