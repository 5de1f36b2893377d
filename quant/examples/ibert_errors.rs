//! Prints the I-BERT kernel error table of `experiments/ibert_kernels/README.md`.
fn main() -> Result<(), quant::QuantError> {
    print!("{}", quant::ibert_error::report()?);
    Ok(())
}
