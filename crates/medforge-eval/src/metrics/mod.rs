//! Text metrics, each matching its reference implementation (see the module docs for the exact
//! reference and version): BLEU (sacrebleu; and nltk's sentence BLEU), ROUGE (rouge-score), METEOR (nltk), EM/F1
//! (SQuAD v1.1).
pub mod bleu;
mod bleu_tok;
mod intern;
pub mod meteor;
pub mod nltk_bleu;
pub mod porter;
pub mod pysplit;
pub mod rouge;
pub mod squad;
pub mod wordnet;
