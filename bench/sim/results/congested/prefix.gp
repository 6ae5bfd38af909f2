set terminal pngcairo size 900,560 noenhanced
set output '/tmp/simres_cong/prefix.png'
set key outside right
set xlabel 'prefix-sharing ratio'
set ylabel 'mean TTFT (ms)'
set grid
plot for [i=0:3] '/tmp/simres_cong/prefix.dat' index i using 1:2 with linespoints title columnheader(1)
