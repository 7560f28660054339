"""Reference genomes, annotations as concepts, TF motifs, designs and windows."""
