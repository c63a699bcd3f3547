"""
@article{Che2018,
  title = {Improved deep learning-based macromolecules structure classification from electron cryo-tomograms},
  author = {Che, Chengqian and Lin, Ruogu and Zeng, Xiangrui and Elmaaroufi, Karim and Galeotti, John and Xu, Min},
  journal = {Machine Vision and Applications},
  volume = {29},
  pages = {1227--1236},
  year = {2018},
  doi = {10.1007/s00138-018-0949-4}
}

@article{Xu2017,
  title = {Deep learning-based subdivision approach for large scale macromolecules structure recovery from electron cryo tomograms},
  author = {Xu, Min and Chai, Xiaoqi and Muthakana, Hariank and Liang, Xiaodan and Yang, Ge and Zeev-Ben-Mordehai, Tzviya and Xing, Eric P.},
  journal = {Bioinformatics},
  volume = {33},
  number = {14},
  pages = {i13--i22},
  year = {2017},
  note = {arXiv:1701.08404},
  doi = {10.1093/bioinformatics/btx230}
}

@article{Forster2008,
  title = {Classification of cryo-electron sub-tomograms using constrained correlation},
  author = {F{\\"o}rster, Friedrich and Pruggnaller, Sabine and Seybert, Anja and Frangakis, Achilleas S.},
  journal = {Journal of Structural Biology},
  volume = {161},
  number = {3},
  pages = {276--286},
  year = {2008},
  doi = {10.1016/j.jsb.2007.07.006}
}

@article{Xu2012,
  title = {High-throughput subtomogram alignment and classification by Fourier space constrained fast volumetric matching},
  author = {Xu, Min and Beck, Martin and Alber, Frank},
  journal = {Journal of Structural Biology},
  volume = {178},
  number = {2},
  pages = {152--164},
  year = {2012},
  doi = {10.1016/j.jsb.2012.02.014}
}

@article{Chen2017,
  title = {Convolutional neural networks for automated annotation of cellular cryo-electron tomograms},
  author = {Chen, Muyuan and Dai, Wei and Sun, Stella Y. and Jonasch, Darius and He, Cynthia Y. and Schmid, Michael F. and Chiu, Wah and Ludtke, Steven J.},
  journal = {Nature Methods},
  volume = {14},
  pages = {983--985},
  year = {2017},
  doi = {10.1038/nmeth.4405}
}

@article{Zeng2023,
  title = {High-throughput cryo-ET structural pattern mining by unsupervised deep iterative subtomogram clustering},
  author = {Zeng, Xiangrui and Kahng, Anson and Xue, Liang and Mahamid, Julia and Chang, Yi-Wei and Xu, Min},
  journal = {Proceedings of the National Academy of Sciences},
  volume = {120},
  number = {15},
  pages = {e2213149120},
  year = {2023},
  doi = {10.1073/pnas.2213149120}
}
"""
