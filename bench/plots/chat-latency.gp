set terminal pngcairo size 900,560
set output 'chat-latency.png'
set title 'Chat: latency against delivered load'
set xlabel 'deliveries per second'
set ylabel 'latency (ms)'
set logscale y
set grid
set key top left
plot 'chat-latency.dat' index 0 using 1:3 with linespoints lw 2 lc 1 title 'bm-relay p99', 'chat-latency.dat' index 0 using 1:2 with linespoints dt 2 lc 1 title 'bm-relay p50', 'chat-latency.dat' index 1 using 1:3 with linespoints lw 2 lc 2 title 'Centrifugo p99', 'chat-latency.dat' index 1 using 1:2 with linespoints dt 2 lc 2 title 'Centrifugo p50', 'chat-latency.dat' index 2 using 1:3 with linespoints lw 2 lc 3 title 'Nchan p99', 'chat-latency.dat' index 2 using 1:2 with linespoints dt 2 lc 3 title 'Nchan p50', 'chat-latency.dat' index 3 using 1:3 with linespoints lw 2 lc 4 title 'socket.io p99', 'chat-latency.dat' index 3 using 1:2 with linespoints dt 2 lc 4 title 'socket.io p50'
